//! Arithmetic for the `calculate` tool: `+ - * / %`, `^` (power), parentheses, unary minus
//! and decimal numbers, in `f64`.
//!
//! Small students get sums wrong when they work them out in text (Qwen2.5-Coder-0.5B wrote
//! 20 × 9 / 5 + 32 = 80); a skill can name this tool for the step that computes. The crates
//! that evaluate expressions either treat `7 / 2` as integer division (evalexpr) or bring a
//! language of their own; a word problem needs school arithmetic and nothing more, so this
//! is a small recursive-descent parser with an error message a model can act on.

/// The value of `expr`, or what is wrong with it (with the character position).
pub fn evaluate(expr: &str) -> Result<f64, String> {
    let length = expr.chars().count();
    if length > MAX_CHARS {
        return Err(format!("the expression is {length} characters long; at most {MAX_CHARS}: split it into parts"));
    }
    let mut p = Parser { chars: expr.chars().collect(), pos: 0, depth: 0 };
    let value = p.sum()?;
    p.skip_spaces();
    if let Some(c) = p.peek() {
        return Err(format!("unexpected `{c}` at character {}", p.pos + 1));
    }
    if value.is_nan() {
        return Err("the result is not a number (a fractional power of a negative number?)".into());
    }
    if !value.is_finite() {
        return Err("the result is too large to be a finite number".into());
    }
    Ok(value)
}

/// A number as the tool returns it: whole numbers without a decimal point, others with at
/// most six decimals and no trailing zeros (`11.025`, not `11.024999999999999`).
pub fn format_number(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e15 {
        return format!("{}", value as i64);
    }
    let text = format!("{value:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".into() } else { text.to_string() }
}

/// Deep enough for any real expression, shallow enough that `((((...`, `----1` or
/// `2^2^2^...` cannot overflow the stack (each level is a recursive call).
const MAX_DEPTH: usize = 64;

/// Longer than any sum a task needs (a sheet of a hundred amounts), short enough to parse
/// at once.
pub const MAX_CHARS: usize = 2000;

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// The next operator among `ops`, consumed.
    fn operator(&mut self, ops: &[char]) -> Option<char> {
        self.skip_spaces();
        let c = self.peek().map(|c| match c {
            '×' | 'x' => '*',
            '÷' => '/',
            '−' => '-',
            '*' if self.chars.get(self.pos + 1) == Some(&'*') => '^',
            c => c,
        })?;
        if !ops.contains(&c) {
            return None;
        }
        self.pos += if self.peek() == Some('*') && c == '^' { 2 } else { 1 };
        Some(c)
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut value = self.product()?;
        while let Some(op) = self.operator(&['+', '-']) {
            let rhs = self.product()?;
            value = if op == '+' { value + rhs } else { value - rhs };
        }
        Ok(value)
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut value = self.power_with_sign()?;
        while let Some(op) = self.operator(&['*', '/', '%']) {
            let rhs = self.power_with_sign()?;
            value = match op {
                '*' => value * rhs,
                '/' if rhs == 0.0 => return Err("division by zero".into()),
                '/' => value / rhs,
                _ if rhs == 0.0 => return Err("remainder of a division by zero".into()),
                _ => value % rhs,
            };
        }
        Ok(value)
    }

    /// One level deeper in the recursion, or an error past [`MAX_DEPTH`].
    fn nested<T>(&mut self, inner: impl FnOnce(&mut Self) -> Result<T, String>) -> Result<T, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("the expression nests deeper than {MAX_DEPTH} levels"));
        }
        let value = inner(self);
        self.depth -= 1;
        value
    }

    /// A sign binds looser than `^`, as in school: `-2 ^ 2` is -4.
    fn power_with_sign(&mut self) -> Result<f64, String> {
        match self.operator(&['-', '+']) {
            Some('-') => self.nested(|p| p.power_with_sign()).map(|v| -v),
            Some(_) => self.nested(|p| p.power_with_sign()),
            None => self.power(),
        }
    }

    /// `^` binds tighter than `*` and groups to the right: `2 ^ 3 ^ 2` is 2 ^ 9.
    fn power(&mut self) -> Result<f64, String> {
        let base = self.atom()?;
        if self.operator(&['^']).is_some() {
            let exponent = self.nested(|p| p.power_with_sign())?;
            return Ok(base.powf(exponent));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<f64, String> {
        self.skip_spaces();
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let value = self.nested(|p| p.sum())?;
                self.skip_spaces();
                if self.peek() != Some(')') {
                    return Err(format!("a `(` is not closed (character {})", self.pos + 1));
                }
                self.pos += 1;
                Ok(value)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                text.parse::<f64>().map_err(|_| format!("`{text}` is not a number (character {})", start + 1))
            }
            Some(c) => {
                Err(format!("unexpected `{c}` at character {}: write numbers and + - * / ^ ( ) only", self.pos + 1))
            }
            None => Err("the expression ends where a number should be".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn school_arithmetic() {
        for (expr, want) in [
            ("17 + 25", 42.0),
            ("30 - 12", 18.0),
            ("4 * 6", 24.0),
            ("7 / 2", 3.5),
            ("20 * 9 / 5 + 32", 68.0),
            ("(50 - 32) * 5 / 9", 10.0),
            ("-3 + 5", 2.0),
            ("2 ^ 3 ^ 2", 512.0),
            ("2 ** 10", 1024.0),
            ("-2 ^ 2", -4.0),
            ("(-2) ^ 2", 4.0),
            ("2 ^ -1", 0.5),
            ("--3", 3.0),
            ("12.5 + 30 + 42.5", 85.0),
            ("10 × 1.609", 16.09),
            ("17 % 5", 2.0),
        ] {
            let got = evaluate(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert!((got - want).abs() < 1e-9, "{expr} = {got}, want {want}");
        }
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(
            evaluate("17 + apples").expect_err("an error"),
            "unexpected `a` at character 6: write numbers and + - * / ^ ( ) only"
        );
        assert_eq!(evaluate("(1 + 2").expect_err("an error"), "a `(` is not closed (character 7)");
        assert_eq!(evaluate("1 / 0").expect_err("an error"), "division by zero");
        assert_eq!(evaluate("1 +").expect_err("an error"), "the expression ends where a number should be");
        assert_eq!(evaluate("1 2").expect_err("an error"), "unexpected `2` at character 3");
        // A decimal comma is not read as a thousands separator (12,5 is not 125).
        assert_eq!(evaluate("12,5").expect_err("an error"), "unexpected `,` at character 3");
        assert_eq!(evaluate("1.2.3").expect_err("an error"), "`1.2.3` is not a number (character 1)");
        for deep in ["(".repeat(1_000), "-".repeat(1_000) + "1", "2^".repeat(500) + "2"] {
            assert!(evaluate(&deep).expect_err("an error").contains("nests deeper than 64"), "{}", &deep[..8]);
        }
        assert!(evaluate(&"1+".repeat(5_000)).expect_err("an error").contains("at most 2000"));
        assert!(evaluate("10 ^ 400").expect_err("an error").contains("too large"));
        assert!(evaluate("(-8) ^ 0.5").expect_err("an error").contains("fractional power"));
    }

    #[test]
    fn numbers_are_shown_as_people_write_them() {
        assert_eq!(format_number(42.0), "42");
        assert_eq!(format_number(11.025), "11.025");
        assert_eq!(format_number(5.0 * 2.205), "11.025");
        assert_eq!(format_number(1.0 / 3.0), "0.333333");
        assert_eq!(format_number(-0.0000001), "0");
        assert_eq!(format_number(-2.5), "-2.5");
    }
}
