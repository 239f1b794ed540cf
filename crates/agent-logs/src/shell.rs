//! What a shell command an agent ran did to files, as far as its text tells: which file it
//! printed and how much of it, and whether it may have changed any file.
//!
//! Agents whose only file tool is a shell (Codex) read files with `cat`, `sed -n '1,200p'`,
//! `head` or `nl -ba`, and change them with redirections, `sed -i`, `git checkout` or
//! scripts. A mined agent case needs both: the files the agent read whole (they become the
//! case's workspace) and the point where it started changing files (reads after it no longer
//! show the files as the user had them). The reading is deliberately conservative: a command
//! not known to only read may write, and a file shown in a way that cannot be told whole
//! (a range, a tail, a glob, a pipeline) is a partial read.

/// What one shell command did to files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShellEffect {
    /// The file text it printed, where it printed any.
    pub read: Option<ShellRead>,
    /// It may have changed files: a command not known to only read, an output redirection
    /// other than to `/dev/null`, a command substitution.
    pub may_write: bool,
}

/// File text a command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShellRead {
    /// One file, printed in a way whose output can be checked for being the whole file.
    File {
        /// The path as the command named it (relative to the command's folder).
        path: String,
        /// How it was printed.
        view: View,
    },
    /// File text shown in a way that cannot be told whole: a range or a tail, several files,
    /// a glob or a variable, a longer pipeline.
    Part,
}

/// How a file was printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// All of it (`cat F`, `sed -n '1,$p' F`).
    Whole,
    /// At most its first N lines (`head -n N F`, `sed -n '1,Np' F`): the whole file when
    /// fewer came out.
    FirstLines(usize),
    /// All of it, each line numbered as `nl -ba` does (`%6d\t`).
    Numbered,
    /// At most its first N lines, numbered (`nl -ba F | sed -n '1,Np'`).
    NumberedFirstLines(usize),
}

impl View {
    /// The file's text, when `output` (what the command printed, the command having exited
    /// 0) shows all of it.
    pub(crate) fn whole_text(self, output: &str) -> Option<String> {
        let (numbered, limit) = match self {
            View::Whole => (false, None),
            View::FirstLines(n) => (false, Some(n)),
            View::Numbered => (true, None),
            View::NumberedFirstLines(n) => (true, Some(n)),
        };
        // As many lines as asked for may be the first of more.
        if limit.is_some_and(|n| output.lines().count() >= n) {
            return None;
        }
        if !numbered {
            return Some(output.to_string());
        }
        let mut text = String::with_capacity(output.len());
        for (i, line) in output.lines().enumerate() {
            let (number, rest) = line.trim_start().split_once('\t')?;
            if number.parse::<usize>().ok()? != i + 1 {
                return None;
            }
            text.push_str(rest);
            text.push('\n');
        }
        Some(text)
    }
}

/// The effect of a command given as an argument vector: `["bash", "-lc", SCRIPT]` (and `sh`,
/// `zsh`, with `-c`) is the script; anything else is one program run with those arguments.
pub(crate) fn effect_of_argv(argv: &[String]) -> ShellEffect {
    let program = argv.first().map(|p| basename(p)).unwrap_or("");
    if argv.len() == 3 && matches!(program, "bash" | "sh" | "zsh" | "dash") && matches!(argv[1].as_str(), "-c" | "-lc")
    {
        return effect_of_script(&argv[2]);
    }
    let tokens: Vec<&str> = argv.iter().map(String::as_str).collect();
    let segment = Segment { tokens: &tokens };
    ShellEffect { read: segment.read(), may_write: segment.may_write() }
}

/// The effect of a shell script (one command line, or several).
pub(crate) fn effect_of_script(script: &str) -> ShellEffect {
    // A trailing `;` or newline ends the command; it is not a second one.
    let script = script.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let Some(scan) = scan(script) else {
        // Unbalanced quotes: nothing can be said of it.
        return ShellEffect { read: None, may_write: true };
    };
    let segments: Vec<Vec<String>> = match scan.segments.iter().map(|s| shlex::split(s)).collect() {
        Some(segments) => segments,
        None => return ShellEffect { read: None, may_write: true },
    };
    let segments: Vec<Vec<&str>> =
        segments.iter().map(|s| s.iter().map(String::as_str).collect()).filter(|s: &Vec<&str>| !s.is_empty()).collect();
    let segments: Vec<Segment> = segments.iter().map(|tokens| Segment { tokens }).collect();
    let may_write = scan.writes || scan.substitutes || segments.iter().any(Segment::may_write);
    let shows_file = segments.iter().any(|s| s.read().is_some());
    let read = match (segments.as_slice(), scan.only_pipes) {
        // What went to /dev/null was not shown.
        _ if scan.stdout_redirected => None,
        ([one], _) => one.read(),
        // `nl -ba F | sed -n '1,200p'`: a numbered file, then its first lines. Only a numbered
        // one: the exit code is the last command's and an error of the first goes straight
        // to the output, where only the numbering tells it from the file's text.
        ([file, filter], true) => match file.read() {
            Some(ShellRead::File { path, view: View::Numbered }) => match filter.first_lines_filter() {
                Some(n) => Some(ShellRead::File { path, view: View::NumberedFirstLines(n) }),
                None => Some(ShellRead::Part),
            },
            Some(_) => Some(ShellRead::Part),
            None => filter.read().map(|_| ShellRead::Part),
        },
        _ => shows_file.then_some(ShellRead::Part),
    };
    ShellEffect { read, may_write }
}

/// A script cut at its unquoted `|`, `&&`, `||`, `;`, `&` and newlines, with what the cut
/// found on the way.
struct Scan {
    segments: Vec<String>,
    /// Every cut was a single `|`.
    only_pipes: bool,
    /// An output redirection to a file (`> out`, `>> log`, `&> f`; not `2>/dev/null`, `2>&1`).
    writes: bool,
    /// A command or process substitution (`$(...)`, backquotes, `<(...)`, `>(...)`): what
    /// it runs is not read here.
    substitutes: bool,
    /// The standard output goes to `/dev/null` (`>/dev/null`, `1>`, `&>`): nothing was shown.
    stdout_redirected: bool,
}

fn scan(script: &str) -> Option<Scan> {
    let mut out = Scan {
        segments: vec![String::new()],
        only_pipes: true,
        writes: false,
        substitutes: false,
        stdout_redirected: false,
    };
    let chars: Vec<char> = script.chars().collect();
    let (mut single, mut double) = (false, false);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let current = out.segments.last_mut().expect("one segment at least");
        if single {
            single = c != '\'';
            current.push(c);
            i += 1;
            continue;
        }
        if c == '\\' && i + 1 < chars.len() {
            current.push(c);
            current.push(chars[i + 1]);
            i += 2;
            continue;
        }
        if c == '`' || (c == '$' && chars.get(i + 1) == Some(&'(')) {
            out.substitutes = true;
        }
        if !double && (c == '<' || c == '>') && chars.get(i + 1) == Some(&'(') {
            out.substitutes = true;
        }
        if double {
            double = c != '"';
            current.push(c);
            i += 1;
            continue;
        }
        match c {
            '\'' => single = true,
            '"' => double = true,
            _ => {}
        }
        match c {
            '|' | '&' | ';' | '\n' => {
                let next = chars.get(i + 1).copied();
                // `&>` redirects both outputs (its `>` comes next); `>&` was taken with its `>`.
                if c == '&' && next == Some('>') {
                    out.stdout_redirected = true;
                    i += 1;
                    continue;
                }
                let doubled = matches!((c, next), ('|', Some('|')) | ('&', Some('&')) | (';', Some(';')));
                out.only_pipes &= c == '|' && !doubled;
                out.segments.push(String::new());
                i += if doubled { 2 } else { 1 };
            }
            '>' => {
                // An fd number just before it (`2>`) belongs to the redirection.
                let digits = current.chars().rev().take_while(char::is_ascii_digit).count();
                let fd_start = current.len() - digits;
                let mut fd = "1".to_string();
                if current[..fd_start].ends_with(|ch: char| ch.is_whitespace()) || fd_start == 0 {
                    if digits > 0 {
                        fd = current[fd_start..].to_string();
                    }
                    current.truncate(fd_start);
                }
                let mut j = i + 1;
                if chars.get(j) == Some(&'>') {
                    j += 1;
                }
                if chars.get(j) == Some(&'&') && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
                    // `2>&1`: into another descriptor.
                    j += 2;
                } else {
                    while chars.get(j).is_some_and(|ch| *ch == ' ' || *ch == '\t') {
                        j += 1;
                    }
                    let start = j;
                    while chars.get(j).is_some_and(|ch| !ch.is_whitespace() && !"|&;<>".contains(*ch)) {
                        j += 1;
                    }
                    let target: String = chars[start..j].iter().collect();
                    out.writes |= target != "/dev/null";
                    out.stdout_redirected |= fd == "1";
                }
                i = j;
            }
            _ => {
                current.push(c);
                i += 1;
            }
        }
    }
    (!single && !double).then_some(out)
}

/// One simple command: its words, quotes removed.
struct Segment<'a> {
    tokens: &'a [&'a str],
}

impl Segment<'_> {
    /// The program and its arguments, leading `NAME=value` assignments skipped.
    fn words(&self) -> (&str, &[&str]) {
        let start = self.tokens.iter().take_while(|t| is_assignment(t)).count();
        match self.tokens.get(start) {
            Some(program) => (basename(program), &self.tokens[start + 1..]),
            None => ("", &[]),
        }
    }

    /// Whether it may change files. Known read-only programs with read-only options only.
    fn may_write(&self) -> bool {
        let (program, args) = self.words();
        let has = |flags: &[&str]| args.iter().any(|a| flags.iter().any(|f| a == f || a.starts_with(&format!("{f}="))));
        match program {
            "" | "cat" | "head" | "tail" | "nl" | "more" | "bat" | "batcat" | "ls" | "pwd" | "cd" | "wc" | "grep"
            | "egrep" | "fgrep" | "ag" | "echo" | "printf" | "which" | "type" | "file" | "stat" | "du" | "df"
            | "cut" | "tr" | "jq" | "true" | "false" | "test" | "[" | "date" | "whoami" | "uname" | "realpath"
            | "dirname" | "basename" | "diff" | "cmp" | "column" | "od" => false,
            // `--pre` runs a program on each file.
            "rg" => has(&["--pre"]),
            // `-o FILE`, `-ofile`, `-uo FILE`, `--output`; `--compress-program` runs one.
            "sort" => args.iter().any(|a| {
                a.starts_with("--o")
                    || a.starts_with("--comp")
                    || (a.starts_with('-') && !a.starts_with("--") && a.contains('o'))
            }),
            "uniq" => args.iter().filter(|a| !a.starts_with('-')).count() > 1,
            "find" => {
                has(&["-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls"])
            }
            "sed" => sed_print(args).is_none(),
            "git" => {
                // Global options before the subcommand: `--no-pager`, `-C DIR`, `-c NAME=VALUE`.
                let mut rest = args;
                loop {
                    rest = match rest {
                        ["--no-pager", more @ ..] => more,
                        ["-C" | "-c", _, more @ ..] => more,
                        _ => break,
                    };
                }
                let read_only = matches!(
                    rest.first().copied(),
                    Some("status" | "diff" | "log" | "show" | "blame" | "rev-parse" | "ls-files" | "grep")
                );
                // `--output=FILE` (diff, log, show) writes; `grep -O`/`--open-files-in-pager` runs one.
                !read_only
                    || rest
                        .iter()
                        .any(|a| a.starts_with("--output") || a.starts_with("-O") || a.starts_with("--open-files"))
            }
            _ => true,
        }
    }

    /// The file it prints, if it is a program that prints files.
    fn read(&self) -> Option<ShellRead> {
        let (program, args) = self.words();
        let operands: Vec<&str> = args.iter().copied().filter(|a| *a != "--").collect();
        let file = |path: &str, view: View| {
            if path.is_empty() || path.starts_with('-') || path.contains(['*', '?', '[', '{', '$', '~', '<']) {
                ShellRead::Part
            } else {
                ShellRead::File { path: path.to_string(), view }
            }
        };
        match program {
            "cat" => Some(match operands.as_slice() {
                [path] if !path.starts_with('-') => file(path, View::Whole),
                _ => ShellRead::Part,
            }),
            "head" => Some(match head_lines(args) {
                Some((n, [path])) => file(path, View::FirstLines(n)),
                _ => ShellRead::Part,
            }),
            "sed" => sed_print(args).map(|print| match print {
                (Some(view), [path]) => file(path, view),
                _ => ShellRead::Part,
            }),
            "nl" => Some(match args {
                ["-ba", path] | ["-b", "a", path] => file(path, View::Numbered),
                _ => ShellRead::Part,
            }),
            "tail" | "less" | "more" | "bat" | "batcat" | "xxd" | "od" => Some(ShellRead::Part),
            _ => None,
        }
    }

    /// The line count of a filter that keeps the first lines of its input (`head -n N`,
    /// `sed -n '1,Np'`), with no file of its own.
    fn first_lines_filter(&self) -> Option<usize> {
        let (program, args) = self.words();
        match program {
            "head" => head_lines(args).filter(|(_, files)| files.is_empty()).map(|(n, _)| n),
            "sed" => match sed_print(args) {
                Some((Some(View::FirstLines(n)), [])) => Some(n),
                _ => None,
            },
            _ => None,
        }
    }
}

/// `head`'s line count (`-n N`, `-nN`, `-N`, `--lines=N`; 10 by default) and its files; None
/// for other options (bytes, negative counts).
fn head_lines<'a>(args: &'a [&'a str]) -> Option<(usize, &'a [&'a str])> {
    match args {
        ["-n", n, files @ ..] => Some((n.parse().ok()?, files)),
        [flag, files @ ..] if flag.starts_with("--lines=") => Some((flag["--lines=".len()..].parse().ok()?, files)),
        [flag, files @ ..] if flag.starts_with("-n") => Some((flag[2..].parse().ok()?, files)),
        [flag, files @ ..] if flag.starts_with('-') && flag.len() > 1 => Some((flag[1..].parse().ok()?, files)),
        files => Some((10, files)),
    }
}

/// `sed -n 'A,Bp' [FILE]` (the only `sed` known not to write) and its files: the view it
/// gives when A is 1, None for another range (a part of the file). None for other scripts.
fn sed_print<'a>(args: &'a [&'a str]) -> Option<(Option<View>, &'a [&'a str])> {
    let (script, files) = match args {
        // GNU sed takes options after the script too (`-i` among them).
        ["-n", script, files @ ..] if !files.iter().any(|f| f.starts_with('-')) => (*script, files),
        _ => return None,
    };
    let range = script.trim().strip_suffix('p')?;
    let (start, end) = range.split_once(',').unwrap_or((range, range));
    let start: usize = start.trim().parse().ok()?;
    let end = end.trim();
    let last: Option<usize> = if end == "$" { None } else { Some(end.parse().ok()?) };
    let view = match (start, last) {
        (1, None) => Some(View::Whole),
        (1, Some(n)) => Some(View::FirstLines(n)),
        _ => None,
    };
    Some((view, files))
}

fn is_assignment(token: &str) -> bool {
    token.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
}

fn basename(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, view: View) -> Option<ShellRead> {
        Some(ShellRead::File { path: path.into(), view })
    }

    #[test]
    fn whole_file_prints_are_told_apart_from_partial_ones() {
        let cases: &[(&str, Option<ShellRead>)] = &[
            ("cat notes/todo.md", file("notes/todo.md", View::Whole)),
            ("cat -- 'my notes.md'", file("my notes.md", View::Whole)),
            ("sed -n '1,200p' src/main.rs", file("src/main.rs", View::FirstLines(200))),
            ("sed -n '1,$p' a.txt", file("a.txt", View::Whole)),
            ("head -n 40 a.csv", file("a.csv", View::FirstLines(40))),
            ("head -40 a.csv", file("a.csv", View::FirstLines(40))),
            ("head a.csv", file("a.csv", View::FirstLines(10))),
            ("nl -ba lib.rs", file("lib.rs", View::Numbered)),
            ("nl -ba lib.rs | sed -n '1,120p'", file("lib.rs", View::NumberedFirstLines(120))),
            ("cat a.csv | head -n 5", Some(ShellRead::Part)),
            ("cat a.txt;", file("a.txt", View::Whole)),
            ("cat a.txt >/dev/null", None),
            ("true | cat a.txt", Some(ShellRead::Part)),
            ("cat a.txt 2>/dev/null", file("a.txt", View::Whole)),
            ("sed -n '40,80p' src/main.rs", Some(ShellRead::Part)),
            ("tail -n 20 log.txt", Some(ShellRead::Part)),
            ("cat a.txt b.txt", Some(ShellRead::Part)),
            ("cat *.md", Some(ShellRead::Part)),
            ("cat $HOME/x", Some(ShellRead::Part)),
            ("cd src && cat main.rs", Some(ShellRead::Part)),
            ("nl -ba lib.rs | grep fn", Some(ShellRead::Part)),
            ("ls -la", None),
            ("rg -n 'cat x' src", None),
            ("grep -n href index.html", None),
        ];
        for (script, read) in cases {
            assert_eq!(&effect_of_script(script).read, read, "{script}");
        }
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(effect_of_argv(&argv(&["bash", "-lc", "cat README.md"])).read, file("README.md", View::Whole));
        assert_eq!(effect_of_argv(&argv(&["cat", "README.md"])).read, file("README.md", View::Whole));
        assert_eq!(
            effect_of_argv(&argv(&["/bin/zsh", "-lc", "sed -n '1,50p' a"])).read,
            file("a", View::FirstLines(50))
        );
    }

    #[test]
    fn commands_not_known_to_only_read_may_write() {
        for script in [
            "cat a.txt",
            "sed -n '1,20p' a",
            "git --no-pager diff",
            "git -C sub status",
            "sort -u names.txt",
            "grep -rn todo . | head",
            "ls; pwd",
            "git status && git diff",
            "find . -name '*.rs'",
            "echo done >&2",
            "cargo_env=1 rg x 2>/dev/null",
            "echo 'a > b'",
        ] {
            assert!(!effect_of_script(script).may_write, "{script}");
        }
        for script in [
            "echo hi > out.txt",
            "cat a>>b",
            "sed -i 's/a/b/' f",
            "python3 fix.py",
            "git checkout -- f",
            "find . -name '*.tmp' -delete",
            "sort -o a.txt a.txt",
            "echo $(rm -rf x)",
            "cat a | tee b",
            "ls && touch x",
            "echo 'unbalanced",
            "cat f &> out",
            "sed -n '1,5p' -i f",
            "diff <(sort a) <(rm -rf x)",
            "sort -uo a.txt a.txt",
            "git diff --output=patch.diff",
            "rg --pre ./run.sh x",
        ] {
            assert!(effect_of_script(script).may_write, "{script}");
        }
    }

    #[test]
    fn a_view_is_whole_only_when_its_output_shows_it_all() {
        assert_eq!(View::Whole.whole_text("a\nb\n").as_deref(), Some("a\nb\n"));
        assert_eq!(View::FirstLines(3).whole_text("a\nb\n").as_deref(), Some("a\nb\n"));
        assert_eq!(View::FirstLines(2).whole_text("a\nb\n"), None, "as many lines as asked: maybe more");
        assert_eq!(View::FirstLines(0).whole_text(""), None);
        assert_eq!(View::Numbered.whole_text("     1\tfn a() {\n     2\t}\n").as_deref(), Some("fn a() {\n}\n"));
        assert_eq!(View::Numbered.whole_text("     1\ta\n     3\tb\n"), None, "a gap in the numbers");
        assert_eq!(View::Numbered.whole_text("a\n"), None, "not numbered");
        assert_eq!(View::NumberedFirstLines(2).whole_text("     1\ta\n     2\tb\n"), None);
    }
}
