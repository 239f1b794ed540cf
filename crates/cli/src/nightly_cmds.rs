//! `skd nightly`: mine the logs, distill the top proposals, gate, stage, report; and its
//! `status`, `adopt`, `install` and `uninstall`.

use crate::Exit;
use crate::config::Config;
use crate::eval_cmds::{DISTILL_MAX_TOKENS, load_teacher};
use crate::logs_cmds::{episode_embedder, library_skills, read_episodes};
use crate::output::{JSON_SCHEMA_VERSION, print_json};
use anyhow::{Context, Result, bail};
use evals::RunnerConfig;
use evals::run::default_cache_dir;
use optimizer::distill::{DistillEvent, StudentSettings};
use optimizer::nightly::{
    AdoptPolicy, NightEvent, NightState, Nightly, NightlyConfig, NightlyPaths, PlanStatus, last_night, lock,
    status_line, unfinished_night,
};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Options of `skd nightly`.
pub struct NightlyArgs {
    pub teacher: Option<String>,
    pub student: Option<String>,
    pub config: NightlyConfig,
    pub max_tokens: Option<u32>,
    pub parallel: usize,
    pub wait_minutes: u64,
    pub json: bool,
}

/// Runs a night, or resumes the one that was interrupted.
pub async fn run(config: &Config, args: NightlyArgs) -> Result<Exit> {
    let paths = NightlyPaths::under(&config.state_dir.value);
    // The lock first: a second night is refused before any model is loaded.
    let night_lock = match lock(&paths) {
        Ok(l) => l,
        Err(e @ optimizer::Error::Busy(_)) => {
            eprintln!("error: {e}");
            return Ok(Exit::Negative);
        }
        Err(e) => return Err(e.into()),
    };
    let resumed = unfinished_night(&paths)?;
    let mut night_config = args.config;
    let student_settings = match resumed.as_ref().and_then(|n| n.config.student.clone()) {
        Some(saved) => {
            if let Some(given) = args.student.as_deref().filter(|s| *s != saved.spec) {
                bail!(
                    "the interrupted night {} measures with the student `{}`, not `{given}`: run without --student \
                     to finish it",
                    resumed.as_ref().map(|n| n.id.as_str()).unwrap_or_default(),
                    saved.spec
                );
            }
            saved
        }
        None => StudentSettings {
            spec: args.student.clone().unwrap_or_else(|| config.student.value.clone()),
            max_tokens: args.max_tokens.unwrap_or(DISTILL_MAX_TOKENS),
        },
    };
    night_config.student = Some(student_settings.clone());
    // Reading a day of session files is seconds of file work.
    let read = match skill_core::blocking(|| read_episodes(config, &[], None, args.wait_minutes))? {
        Ok(read) => read,
        Err(code) => return Ok(code),
    };
    let episodes = read.store.episodes();
    let teacher = load_teacher(config, args.teacher.as_deref(), args.json).await?.context(
        "the night needs a teacher: pass --teacher URL#model (or a local model id), set SKD_TEACHER or \
         OPENAI_MODEL, or put `teacher = ...` in the config",
    )?;
    let student = crate::run_cmds::load_student(config, &student_settings.spec, args.json).await?;
    let embedder = episode_embedder(config, args.json);
    let nightly = Nightly {
        student,
        teacher: teacher.as_ref(),
        embedder: &embedder,
        library_root: config.skills_dir.value.clone(),
        library: library_skills(config),
        paths: paths.clone(),
        runner: RunnerConfig {
            max_tokens: student_settings.max_tokens,
            cache_dir: Some(default_cache_dir()),
            parallelism: args.parallel,
            ..RunnerConfig::default()
        },
    };
    let quiet = args.json;
    let mut on_event = |e: NightEvent| {
        if quiet {
            return;
        }
        match e {
            NightEvent::Step(s) => eprintln!("== {s}"),
            NightEvent::Distill(skill, DistillEvent::Stage(s)) => eprintln!("   {skill}: {s}"),
            NightEvent::Distill(skill, DistillEvent::Round(r)) => eprintln!(
                "   {skill}: round {}: validation {}: {}",
                r.round,
                r.validation_rate.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or_else(|| "-".into()),
                if r.improved { "new best" } else { r.note.as_str() }
            ),
            NightEvent::Distill(_, DistillEvent::Case(..)) => {}
        }
    };
    let night = nightly.run(&night_lock, &episodes, night_config, &mut on_event).await?;
    drop(night_lock);
    for plan in &night.plans {
        if matches!(plan.status, optimizer::nightly::PlanStatus::Adopted { .. }) {
            publish(config, &plan.skill);
        }
    }
    print_night(&paths, &night, args.json)?;
    Ok(Exit::Ok)
}

fn print_night(paths: &NightlyPaths, night: &NightState, json: bool) -> Result<()> {
    let dir = paths.night(&night.id);
    if json {
        return print_json(&json!({"schema_version": JSON_SCHEMA_VERSION, "report": dir.join("report.md"),
                                  "night": night}));
    }
    let episodes: usize = night.episodes.values().sum();
    println!(
        "night {} ({}): {episodes} episodes, {} jobs, {} proposals, {} worked on; teacher tokens {}",
        night.id,
        match night.stage {
            optimizer::nightly::NightStage::Finished => "finished",
            optimizer::nightly::NightStage::Working => "interrupted",
        },
        night.jobs,
        night.proposals_found,
        night.plans.len(),
        night.teacher_tokens
    );
    for p in &night.plans {
        println!("  {:<28} {}", p.skill, status_line(&p.status));
    }
    println!("report: {}", dir.join("report.md").display());
    Ok(())
}

/// `skd nightly status`: the last night, what it staged, and a night in progress.
pub fn status(config: &Config, json: bool) -> Result<Exit> {
    let paths = NightlyPaths::under(&config.state_dir.value);
    let last = last_night(&paths)?;
    let current = unfinished_night(&paths)?;
    let running = matches!(lock(&paths), Err(optimizer::Error::Busy(_)));
    if json {
        print_json(&json!({"schema_version": JSON_SCHEMA_VERSION, "running": running, "last": last,
                           "interrupted": if running { None } else { current.clone() }}))?;
        return Ok(Exit::Ok);
    }
    match &current {
        Some(n) if running => println!("a night is running (began {})", n.started),
        Some(n) => println!("the night {} was interrupted: `skd nightly` finishes it", n.id),
        None if running => println!("a night is starting"),
        None => {}
    }
    match &last {
        Some(night) => {
            print_night(&paths, night, false)?;
            let staged: Vec<_> = night
                .plans
                .iter()
                .filter(|p| matches!(p.status, PlanStatus::Staged | PlanStatus::EditedByHand))
                .collect();
            for p in &staged {
                println!(
                    "staged: {} ({}); `skd nightly adopt {}`",
                    p.skill,
                    paths.staged(&night.id, &p.skill).join("SKILL.md.diff").display(),
                    p.skill
                );
            }
        }
        None => println!("no night has finished yet"),
    }
    Ok(Exit::Ok)
}

/// `skd nightly adopt NAME`: the last night's staged change becomes the library's skill.
pub fn adopt(config: &Config, name: &str, force: bool) -> Result<Exit> {
    let paths = NightlyPaths::under(&config.state_dir.value);
    match optimizer::nightly::adopt(&paths, &config.skills_dir.value, name, force) {
        Ok(version) => {
            println!("{name}: the staged change is version {version} and active");
            publish(config, name);
            Ok(Exit::Ok)
        }
        Err(optimizer::Error::Other(why)) => {
            eprintln!("error: {why}");
            Ok(Exit::Negative)
        }
        Err(e) => Err(e.into()),
    }
}

/// Copies an adopted skill to each of `publish_skill_dirs`. A folder it cannot go to (a
/// skill of that name there that is not one of ours) is named on stderr; the adoption
/// stands.
fn publish(config: &Config, name: &str) {
    let library = config.library();
    for dir in &config.publish_skill_dirs.value {
        let published = library.find(name).and_then(|entry| library.publish(&entry, dir));
        match published {
            Ok((dest, true)) => eprintln!("published {name} -> {}", dest.display()),
            Ok((_, false)) => {}
            Err(e) => eprintln!("warning: {name} not published to {}: {e}", dir.display()),
        }
    }
}

const UNIT: &str = "skd-nightly";
const CRON_MARK: &str = "# skd-nightly";

fn systemd_dir() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("systemd/user"))
}

fn has_program(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

/// Parses `HH:MM`.
fn parse_at(at: &str) -> Result<(u8, u8)> {
    let parsed = at.split_once(':').and_then(|(h, m)| Some((h.parse::<u8>().ok()?, m.parse::<u8>().ok()?)));
    match parsed {
        Some((h, m)) if h < 24 && m < 60 => Ok((h, m)),
        _ => bail!("--at {at}: not a time of day as HH:MM (03:30)"),
    }
}

/// `skd nightly install --at HH:MM`: a systemd user timer, or a crontab line where there is
/// no systemd.
pub fn install(config: &Config, at: &str) -> Result<Exit> {
    let (hour, minute) = parse_at(at)?;
    let exe = std::env::current_exe().context("finding the skd binary")?;
    let log = config.state_dir.value.join("nightly/night.log");
    if has_program("systemctl") && Path::new("/run/systemd/system").exists() {
        let dir = systemd_dir().context("no config folder for systemd units")?;
        let service = format!(
            "[Unit]\nDescription=skd: mine the agents' logs and distill skills\n\n[Service]\nType=oneshot\n\
             ExecStart={} nightly\nNice=10\n",
            exe.display()
        );
        let timer = format!(
            "[Unit]\nDescription=skd nightly at {hour:02}:{minute:02}\n\n[Timer]\nOnCalendar=*-*-* \
             {hour:02}:{minute:02}:00\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
        );
        skill_core::fsutil::atomic_write(&dir.join(format!("{UNIT}.service")), service.as_bytes())?;
        skill_core::fsutil::atomic_write(&dir.join(format!("{UNIT}.timer")), timer.as_bytes())?;
        for args in [&["--user", "daemon-reload"][..], &["--user", "enable", "--now", &format!("{UNIT}.timer")]] {
            let status = std::process::Command::new("systemctl").args(args).status().context("running systemctl")?;
            if !status.success() {
                bail!("systemctl {} failed ({status}); the units are in {}", args.join(" "), dir.display());
            }
        }
        println!("installed {}/{UNIT}.timer: skd nightly every day at {hour:02}:{minute:02}", dir.display());
        return Ok(Exit::Ok);
    }
    let line = format!("{minute} {hour} * * * {} nightly >> {} 2>&1 {CRON_MARK}", exe.display(), log.display());
    if !has_program("crontab") {
        eprintln!("error: neither systemd nor crontab is available here; add this line to your scheduler:\n{line}");
        return Ok(Exit::Negative);
    }
    let existing = crontab_lines()?;
    let mut lines: Vec<String> = existing.into_iter().filter(|l| !l.ends_with(CRON_MARK)).collect();
    lines.push(line.clone());
    write_crontab(&lines)?;
    println!("installed in your crontab: {line}");
    Ok(Exit::Ok)
}

/// `skd nightly uninstall`: removes the timer or the crontab line.
pub fn uninstall() -> Result<Exit> {
    let mut removed = false;
    if let Some(dir) = systemd_dir() {
        let timer = dir.join(format!("{UNIT}.timer"));
        if timer.exists() {
            if has_program("systemctl") {
                // Best effort: the units go whether or not a user manager runs.
                let _ = std::process::Command::new("systemctl")
                    .args(["--user", "disable", "--now", &format!("{UNIT}.timer")])
                    .status();
            }
            for f in [timer, dir.join(format!("{UNIT}.service"))] {
                if f.exists() {
                    std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
                }
            }
            removed = true;
        }
    }
    if has_program("crontab") {
        let lines = crontab_lines()?;
        if lines.iter().any(|l| l.ends_with(CRON_MARK)) {
            write_crontab(&lines.into_iter().filter(|l| !l.ends_with(CRON_MARK)).collect::<Vec<_>>())?;
            removed = true;
        }
    }
    if removed {
        println!("skd nightly is no longer scheduled");
        Ok(Exit::Ok)
    } else {
        eprintln!("skd nightly was not scheduled");
        Ok(Exit::Negative)
    }
}

fn crontab_lines() -> Result<Vec<String>> {
    let out = std::process::Command::new("crontab").arg("-l").output().context("running crontab -l")?;
    // `crontab -l` fails when the user has no crontab yet: that is an empty one.
    if !out.status.success() {
        return Ok(Vec::new());
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
}

fn write_crontab(lines: &[String]) -> Result<()> {
    use std::io::Write;
    let mut child = std::process::Command::new("crontab")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("running crontab -")?;
    let mut text = lines.join("\n");
    text.push('\n');
    child.stdin.take().context("crontab's stdin")?.write_all(text.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("crontab - failed ({status})");
    }
    Ok(())
}

/// The adopt policy from its command-line name.
pub fn parse_adopt(text: &str) -> AdoptPolicy {
    if text == "beneficial" { AdoptPolicy::Beneficial } else { AdoptPolicy::Never }
}
