//! The analyzer's parser: recovers tool calls from what an LLM answers to
//! the upstream prompt, a "non-standard JSON" of one object per task, often
//! with full-width punctuation (`｛｝：，“”`), wrapped in prose or code
//! fences, with trailing commas, curly quotes, single quotes, bare keys, or
//! as a JSON array. It takes every object it can recover, never panics, and
//! reports what it skipped.
//!
//! Full-width punctuation is structural only outside strings: the text of
//! an instruction keeps its own `，` and `：`.

use serde_json::{Map, Number, Value};

/// What the parser recovered.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    /// Calls with `"agentType": "mcp"`.
    pub mcp: Vec<Map<String, Value>>,
    /// Calls with `"agentType": "agent"`.
    pub agent: Vec<Map<String, Value>>,
    /// Why each skipped piece was skipped.
    pub skipped: Vec<String>,
}

impl Parsed {
    pub fn is_empty(&self) -> bool {
        self.mcp.is_empty() && self.agent.is_empty()
    }
}

/// Deepest nesting accepted (objects and arrays), so hostile input cannot
/// exhaust the stack.
const MAX_DEPTH: usize = 32;

pub fn parse_tool_calls(text: &str) -> Parsed {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Parsed::default();
    let mut i = 0;
    while i < chars.len() {
        if !is_open_brace(chars[i]) {
            i += 1;
            continue;
        }
        let mut p = Parser {
            s: &chars,
            i,
            depth: 0,
        };
        match p.object() {
            Ok(obj) => {
                i = p.i;
                classify(obj, &mut out);
            }
            Err(why) => {
                out.skipped.push(format!(
                    "unreadable object at character {i}: {why}: {}",
                    snippet(&chars, i)
                ));
                i += 1;
            }
        }
    }
    out
}

fn classify(obj: Map<String, Value>, out: &mut Parsed) {
    if obj.is_empty() {
        return; // `｛｝`: nothing to do.
    }
    let kind = obj
        .get("agentType")
        .or_else(|| obj.get("agent_type"))
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase());
    match kind.as_deref() {
        Some("mcp") => out.mcp.push(obj),
        Some("agent") => out.agent.push(obj),
        Some(other) => out.skipped.push(format!(
            "unknown agentType `{other}` (expected mcp or agent)"
        )),
        None => out.skipped.push(format!(
            "object without agentType skipped: {}",
            crate::ids::clip(&Value::Object(obj).to_string(), 120)
        )),
    }
}

fn snippet(chars: &[char], at: usize) -> String {
    chars[at..chars.len().min(at + 40)]
        .iter()
        .collect::<String>()
        .replace('\n', " ")
}

fn is_open_brace(c: char) -> bool {
    matches!(c, '{' | '｛')
}
fn is_close_brace(c: char) -> bool {
    matches!(c, '}' | '｝')
}
fn is_open_bracket(c: char) -> bool {
    matches!(c, '[' | '［')
}
fn is_close_bracket(c: char) -> bool {
    matches!(c, ']' | '］')
}
fn is_colon(c: char) -> bool {
    matches!(c, ':' | '：')
}
fn is_comma(c: char) -> bool {
    matches!(c, ',' | '，' | '、')
}
/// A quote that opens a string, and the one that closes it.
fn closing_quote(c: char) -> Option<char> {
    match c {
        '"' => Some('"'),
        '\'' => Some('\''),
        '“' => Some('”'),
        '”' => Some('”'),
        '‘' => Some('’'),
        '「' => Some('」'),
        _ => None,
    }
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
    depth: usize,
}

type R<T> = Result<T, &'static str>;

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == '\u{feff}' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn object(&mut self) -> R<Map<String, Value>> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        self.i += 1; // the opening brace
        let mut map = Map::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err("unterminated object"),
                Some(c) if is_close_brace(c) => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(map);
                }
                Some(c) if is_comma(c) => self.i += 1, // stray or trailing comma
                Some(_) => {
                    let key = self.key()?;
                    self.skip_ws();
                    if !self.peek().is_some_and(is_colon) {
                        return Err("expected `:` after a key");
                    }
                    self.i += 1;
                    self.skip_ws();
                    let value = self.value()?;
                    map.insert(key, value);
                    self.skip_ws();
                    match self.peek() {
                        Some(c) if is_comma(c) => self.i += 1,
                        Some(c) if is_close_brace(c) => {}
                        // Models often separate pairs by newlines alone.
                        Some(c) if closing_quote(c).is_some() || c.is_alphabetic() || c == '_' => {}
                        None => return Err("unterminated object"),
                        Some(_) => return Err("expected `,` or `}` after a value"),
                    }
                }
            }
        }
    }

    fn array(&mut self) -> R<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err("unterminated array"),
                Some(c) if is_close_bracket(c) => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Array(items));
                }
                Some(c) if is_comma(c) => self.i += 1,
                Some(_) => items.push(self.value()?),
            }
        }
    }

    fn key(&mut self) -> R<String> {
        match self.peek() {
            Some(c) if closing_quote(c).is_some() => self.string(),
            _ => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '$') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                if self.i == start {
                    return Err("expected a key");
                }
                Ok(self.s[start..self.i].iter().collect())
            }
        }
    }

    fn value(&mut self) -> R<Value> {
        match self.peek() {
            None => Err("expected a value"),
            Some(c) if is_open_brace(c) => self.object().map(Value::Object),
            Some(c) if is_open_bracket(c) => self.array(),
            Some(c) if closing_quote(c).is_some() => self.string().map(Value::String),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(_) => self.bare(),
        }
    }

    fn string(&mut self) -> R<String> {
        let open = self.peek().ok_or("expected a string")?;
        let close = closing_quote(open).ok_or("expected a string")?;
        self.i += 1;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            if c == close || (open == '"' && c == '”') || (open == '“' && c == '"') {
                return Ok(out);
            }
            if c == '\\' {
                let e = self.peek().ok_or("unterminated string")?;
                self.i += 1;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex: String = self
                            .s
                            .get(self.i..self.i + 4)
                            .ok_or("bad \\u escape")?
                            .iter()
                            .collect();
                        let code = u32::from_str_radix(&hex, 16).map_err(|_| "bad \\u escape")?;
                        self.i += 4;
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    other => out.push(other),
                }
            } else {
                out.push(c);
            }
        }
        Err("unterminated string")
    }

    fn number(&mut self) -> R<Value> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E') {
                self.i += 1;
            } else {
                break;
            }
        }
        let text: String = self.s[start..self.i].iter().collect();
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Value::Number(n.into()));
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or("bad number")
    }

    /// `true`, `false`, `null`, Python's `True`/`False`/`None`, or an
    /// unquoted word, kept as a string up to the end of the value.
    fn bare(&mut self) -> R<Value> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if is_comma(c) || is_close_brace(c) || is_close_bracket(c) || c == '\n' {
                break;
            }
            self.i += 1;
        }
        let word: String = self.s[start..self.i]
            .iter()
            .collect::<String>()
            .trim()
            .to_owned();
        Ok(match word.as_str() {
            "" => return Err("expected a value"),
            "true" | "True" => Value::Bool(true),
            "false" | "False" => Value::Bool(false),
            "null" | "None" => Value::Null,
            _ => Value::String(word),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upstream_prompt_example_with_full_width_punctuation() {
        let text = "｛\n\"agentType\": \"mcp\",\n\"service_name\": \"天气时间Agent\",\n\"tool_name\": \"today_weather\",\n\"city\": \"北京 北京\"\n｝\n｛\n\"agentType\": \"agent\",\n\"task_type\": \"computer_control\",\n\"instruction\": \"打开浏览器\",\n\"parameters\": ｛\"action\": \"open\", \"target\": \"browser\"｝\n｝";
        let p = parse_tool_calls(text);
        assert_eq!(p.mcp, vec![json!({"agentType": "mcp", "service_name": "天气时间Agent", "tool_name": "today_weather", "city": "北京 北京"}).as_object().unwrap().clone()]);
        assert_eq!(
            Value::Object(p.agent[0].clone()),
            json!({"agentType": "agent", "task_type": "computer_control", "instruction": "打开浏览器", "parameters": {"action": "open", "target": "browser"}})
        );
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    }

    #[test]
    fn full_width_colons_commas_and_curly_quotes_outside_strings_only() {
        let text = "好的，我来安排：\n｛“agentType”：“agent”，“tool_name”：“computer_control”，“instruction”：“打开记事本，然后输入：你好”，｝";
        let p = parse_tool_calls(text);
        assert_eq!(p.agent[0]["instruction"], "打开记事本，然后输入：你好");
        assert_eq!(p.agent[0]["tool_name"], "computer_control");
    }

    #[test]
    fn fences_arrays_trailing_commas_bare_keys_and_python_words() {
        let text = "```json\n[\n {\"agentType\": \"mcp\", \"service_name\": \"calc\", \"tool_name\": \"add\", \"a\": 1, \"b\": -2.5,},\n {agentType: 'agent', tool_name: 'echo', instruction: 'hi', flag: True, none: None}\n]\n```";
        let p = parse_tool_calls(text);
        assert_eq!(p.mcp[0]["b"], json!(-2.5));
        assert_eq!(p.agent[0]["flag"], json!(true));
        assert_eq!(p.agent[0]["none"], Value::Null);
        assert_eq!(p.agent[0]["instruction"], "hi");
    }

    #[test]
    fn empty_objects_mean_nothing_to_do_and_junk_is_reported() {
        assert_eq!(parse_tool_calls("｛｝"), Parsed::default());
        assert_eq!(parse_tool_calls("no tasks here"), Parsed::default());
        let p = parse_tool_calls("{\"tool_name\": \"x\"} {\"agentType\": \"robot\"} {\"agentType\": \"agent\", \"instruction\": ");
        assert!(p.is_empty());
        assert_eq!(p.skipped.len(), 3, "{:?}", p.skipped);
        assert!(p.skipped[0].contains("without agentType"));
        assert!(p.skipped[1].contains("robot"));
        assert!(p.skipped[2].contains("unreadable"), "{:?}", p.skipped);
    }

    #[test]
    fn pairs_separated_by_newlines_alone() {
        let p = parse_tool_calls(
            "{\n\"agentType\": \"agent\"\n\"tool_name\": \"echo\"\n\"instruction\": \"a\"\n}",
        );
        assert_eq!(p.agent[0]["tool_name"], "echo");
        assert_eq!(p.agent[0]["instruction"], "a");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let text = "{".repeat(100_000);
        let p = parse_tool_calls(&text[..2000]);
        assert!(p.is_empty());
    }
}
