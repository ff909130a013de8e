//! `edit`'s SEARCH/REPLACE blocks: parsed from the diff text, applied to
//! the file's text (each SEARCH must match exactly once).

use super::ToolError;

#[derive(Debug, PartialEq)]
pub struct Block {
    pub search: String,
    pub replace: String,
}

/// Parses `<<<<<<< SEARCH … ======= … >>>>>>> REPLACE` blocks.
pub fn parse_blocks(diff: &str) -> Result<Vec<Block>, ToolError> {
    enum State {
        Outside,
        Search(Vec<String>),
        Replace(Vec<String>, Vec<String>),
    }
    let mut blocks = Vec::new();
    let mut state = State::Outside;
    for line in diff.lines() {
        let marker = line.trim_end();
        state = match state {
            State::Outside if marker.starts_with("<<<<<<<") && marker.ends_with("SEARCH") => {
                State::Search(Vec::new())
            }
            State::Outside => State::Outside,
            State::Search(s) if marker == "=======" => State::Replace(s, Vec::new()),
            State::Search(mut s) => {
                s.push(line.to_owned());
                State::Search(s)
            }
            State::Replace(s, r)
                if marker.starts_with(">>>>>>>") && marker.ends_with("REPLACE") =>
            {
                blocks.push(Block {
                    search: join_lines(&s),
                    replace: join_lines(&r),
                });
                State::Outside
            }
            State::Replace(s, mut r) => {
                r.push(line.to_owned());
                State::Replace(s, r)
            }
        };
    }
    if !matches!(state, State::Outside) {
        return Err(ToolError::Invalid(
            "unterminated SEARCH/REPLACE block: each needs `<<<<<<< SEARCH`, `=======` and `>>>>>>> REPLACE` lines".into(),
        ));
    }
    if blocks.is_empty() {
        return Err(ToolError::Invalid(
            "no SEARCH/REPLACE block found: write `<<<<<<< SEARCH`, the old lines, `=======`, the new lines, `>>>>>>> REPLACE`".into(),
        ));
    }
    Ok(blocks)
}

fn join_lines(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Applies blocks in order, each to the first match. An empty SEARCH puts
/// the text into an empty (or new) file. Any block that does not match fails
/// the whole edit.
pub fn apply_blocks(original: &str, blocks: &[Block]) -> Result<String, ToolError> {
    let mut text = original.to_owned();
    for (i, b) in blocks.iter().enumerate() {
        if b.search.is_empty() {
            if !text.is_empty() {
                return Err(ToolError::Invalid(format!(
                    "block {}: an empty SEARCH only creates a new or empty file",
                    i + 1
                )));
            }
            text = b.replace.clone();
            continue;
        }
        let found = text.find(&b.search).or_else(|| {
            // Tolerate a file whose last line has no newline.
            let trimmed = b.search.strip_suffix('\n')?;
            text.ends_with(trimmed).then(|| text.len() - trimmed.len())
        });
        let Some(at) = found else {
            return Err(ToolError::Invalid(format!(
                "block {}: SEARCH text not found in the file: {:?}",
                i + 1,
                naga_core::ids::clip(&b.search, 200)
            )));
        };
        let end = (at + b.search.len()).min(text.len());
        text.replace_range(at..end, &b.replace);
    }
    Ok(text)
}
