//! The file_edit toolkit: read, write, list and edit (SEARCH/REPLACE blocks)
//! files confined to one root directory. Absolute paths, `..` and symlinks
//! that lead out of the root are refused.

use super::{parameters, Agent, CallContext, CallOutcome};
use futures::future::BoxFuture;
use naga_core::wire::CallPayload;
use serde_json::{json, Map, Value};
use std::{
    fs,
    io::Write,
    path::{Component, Path, PathBuf},
};

/// Largest file read_file returns.
const MAX_READ_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ToolError {
    #[error("unknown tool `{0}`: file_edit has read_file, write_file, edit_file, list_files, create_directory, delete_file")]
    UnknownTool(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Io(String),
}

pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: fn() -> Value,
}

pub const TOOLS: [ToolSpec; 6] = [
    ToolSpec {
        name: "read_file",
        description: "Read a UTF-8 text file of the workspace.",
        input_schema: || {
            json!({"type": "object", "required": ["path"],
            "properties": {"path": {"type": "string", "description": "relative to the workspace"}}})
        },
    },
    ToolSpec {
        name: "write_file",
        description: "Create or replace a text file of the workspace (parent folders are created).",
        input_schema: || {
            json!({"type": "object", "required": ["path"],
            "properties": {"path": {"type": "string"}, "content": {"type": "string"},
                "file_text": {"type": "string", "description": "the same as content (upstream's name)"}}})
        },
    },
    ToolSpec {
        name: "edit_file",
        description:
            "Apply SEARCH/REPLACE blocks to a file: every block must match, or nothing is written.",
        input_schema: || {
            json!({"type": "object", "required": ["path", "diff"],
            "properties": {"path": {"type": "string"}, "diff": {"type": "string",
                "description": "<<<<<<< SEARCH\\nold\\n=======\\nnew\\n>>>>>>> REPLACE, one or more"}}})
        },
    },
    ToolSpec {
        name: "list_files",
        description: "List a folder of the workspace.",
        input_schema: || {
            json!({"type": "object",
            "properties": {"path": {"type": "string", "description": "folder, default the workspace root"},
                "directory": {"type": "string", "description": "the same as path (upstream's name)"}}})
        },
    },
    ToolSpec {
        name: "create_directory",
        description: "Create a folder of the workspace (and its parents).",
        input_schema: || {
            json!({"type": "object", "required": ["path"],
            "properties": {"path": {"type": "string"}}})
        },
    },
    ToolSpec {
        name: "delete_file",
        description: "Delete a file of the workspace (not a folder).",
        input_schema: || {
            json!({"type": "object", "required": ["path"],
            "properties": {"path": {"type": "string"}}})
        },
    },
];

pub struct FileEditToolkit {
    root: PathBuf,
}

impl FileEditToolkit {
    /// Creates the root if needed.
    pub fn new(root: PathBuf) -> std::io::Result<Self> {
        fs::create_dir_all(&root)?;
        Ok(Self {
            root: root.canonicalize()?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub const NAME: &'static str = "file_edit";
    pub const DESCRIPTION: &'static str =
        "Read, write, edit and list files inside the workspace folder.";

    /// Calls one tool with its arguments. Blocking file work runs off the
    /// async threads.
    pub async fn call(&self, tool: &str, args: &Map<String, Value>) -> Result<Value, ToolError> {
        let root = self.root.clone();
        let tool = tool.to_owned();
        let args = args.clone();
        tokio::task::spawn_blocking(move || call_blocking(&root, &tool, &args))
            .await
            .map_err(|e| ToolError::Io(format!("file tool stopped: {e}")))?
    }
}

fn str_arg<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, ToolError> {
    match args.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ToolError::Invalid(format!("`{key}` must be a string"))),
        None => Err(ToolError::Invalid(format!("`{key}` is required"))),
    }
}

fn call_blocking(root: &Path, tool: &str, args: &Map<String, Value>) -> Result<Value, ToolError> {
    match tool {
        "read_file" => {
            let rel = str_arg(args, "path")?;
            let path = resolve(root, rel)?;
            let meta = fs::metadata(&path).map_err(|e| not_found(rel, e))?;
            if !meta.is_file() {
                return Err(ToolError::Invalid(format!("`{rel}` is not a file")));
            }
            if meta.len() > MAX_READ_BYTES {
                return Err(ToolError::Refused(format!(
                    "`{rel}` has {} bytes; read_file returns at most {MAX_READ_BYTES}",
                    meta.len()
                )));
            }
            let content = fs::read_to_string(&path).map_err(|e| io_error(rel, e))?;
            Ok(json!({"path": rel, "content": content, "size": meta.len()}))
        }
        "write_file" => {
            let rel = str_arg(args, "path")?;
            let content = match args.contains_key("content") {
                true => str_arg(args, "content")?,
                false => str_arg(args, "file_text").map_err(|_| {
                    ToolError::Invalid("`content` (or `file_text`) is required".into())
                })?,
            };
            let path = resolve(root, rel)?;
            write_atomic(&path, content.as_bytes())?;
            Ok(json!({"path": rel, "bytes_written": content.len()}))
        }
        "edit_file" => {
            let rel = str_arg(args, "path")?;
            let diff = args
                .get("diff")
                .or_else(|| args.get("edits"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ToolError::Invalid("`diff` (SEARCH/REPLACE blocks) is required".into())
                })?;
            let blocks = parse_blocks(diff)?;
            let path = resolve(root, rel)?;
            let original = match fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(io_error(rel, e)),
            };
            let edited = apply_blocks(&original, &blocks)?;
            write_atomic(&path, edited.as_bytes())?;
            Ok(json!({"path": rel, "blocks_applied": blocks.len(), "size": edited.len()}))
        }
        "list_files" => {
            let rel = match args.get("path").or_else(|| args.get("directory")) {
                None | Some(Value::Null) => ".",
                Some(Value::String(s)) => s.as_str(),
                Some(_) => return Err(ToolError::Invalid("`path` must be a string".into())),
            };
            let path = resolve(root, rel)?;
            let mut entries = Vec::new();
            for entry in fs::read_dir(&path).map_err(|e| not_found(rel, e))? {
                let entry = entry.map_err(|e| ToolError::Io(e.to_string()))?;
                let meta = entry.metadata().map_err(|e| ToolError::Io(e.to_string()))?;
                let kind = if meta.is_dir() {
                    "dir"
                } else if meta.file_type().is_symlink() {
                    "symlink"
                } else {
                    "file"
                };
                entries.push(json!({"name": entry.file_name().to_string_lossy(),
                                    "type": kind, "size": meta.len()}));
            }
            entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            Ok(json!({"path": rel, "entries": entries}))
        }
        "create_directory" => {
            let rel = str_arg(args, "path")?;
            let path = resolve(root, rel)?;
            fs::create_dir_all(&path).map_err(|e| io_error(rel, e))?;
            Ok(json!({"path": rel, "created": true}))
        }
        "delete_file" => {
            let rel = str_arg(args, "path")?;
            let path = resolve(root, rel)?;
            let meta = fs::symlink_metadata(&path).map_err(|e| not_found(rel, e))?;
            if meta.is_dir() {
                return Err(ToolError::Invalid(format!(
                    "`{rel}` is a folder: delete_file deletes files"
                )));
            }
            fs::remove_file(&path).map_err(|e| io_error(rel, e))?;
            Ok(json!({"path": rel, "deleted": true}))
        }
        other => Err(ToolError::UnknownTool(other.to_owned())),
    }
}

fn not_found(rel: &str, e: std::io::Error) -> ToolError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ToolError::NotFound(format!("`{rel}` does not exist in the workspace"))
    } else {
        io_error(rel, e)
    }
}

/// An I/O error: the request's fault where the path or the file's content
/// is (not text, a directory, a name too long), else the machine's.
fn io_error(rel: &str, e: std::io::Error) -> ToolError {
    use std::io::ErrorKind::*;
    match e.kind() {
        InvalidData => ToolError::Invalid(format!("`{rel}` is not UTF-8 text")),
        NotFound => not_found(rel, e),
        IsADirectory | NotADirectory | InvalidFilename | InvalidInput => {
            ToolError::Invalid(format!("`{rel}`: {e}"))
        }
        _ => ToolError::Io(format!("`{rel}`: {e}")),
    }
}

/// Longest path accepted, and longest name in it, in bytes (Linux's).
const MAX_PATH_BYTES: usize = 4096;
const MAX_NAME_BYTES: usize = 255;

/// Maps a workspace-relative path to a path inside `root`, refusing
/// absolute paths, `..`, and symlinks whose target is outside the root.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, ToolError> {
    if rel.contains('\0') {
        return Err(ToolError::Invalid(
            "a path must not contain NUL bytes".into(),
        ));
    }
    if rel.len() > MAX_PATH_BYTES {
        return Err(ToolError::Invalid(format!(
            "a path has at most {MAX_PATH_BYTES} bytes; this one has {}",
            rel.len()
        )));
    }
    let p = Path::new(rel);
    for c in p.components() {
        match c {
            Component::Normal(name) if name.len() > MAX_NAME_BYTES => {
                return Err(ToolError::Invalid(format!(
                    "`{}…`: a file name has at most {MAX_NAME_BYTES} bytes",
                    rel.chars().take(40).collect::<String>()
                )))
            }
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(ToolError::Refused(format!(
                    "`{rel}`: `..` is refused; give a path inside the workspace"
                )))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ToolError::Refused(format!(
                    "`{rel}`: absolute paths are refused; give a path relative to the workspace"
                )))
            }
        }
    }
    let full = root.join(p);
    // The deepest part of the path that exists (a dangling symlink counts)
    // must resolve inside the root; what is below it will be created there.
    let mut existing = full.as_path();
    while fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().unwrap_or(root);
    }
    let real = existing.canonicalize().map_err(|_| {
        ToolError::Refused(format!("`{rel}`: a symlink on this path leads nowhere"))
    })?;
    if !real.starts_with(root) {
        return Err(ToolError::Refused(format!(
            "`{rel}`: a symlink on this path leads out of the workspace"
        )));
    }
    Ok(full)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ToolError> {
    let dir = path
        .parent()
        .ok_or_else(|| ToolError::Invalid("a file path is required".into()))?;
    if path.is_dir() {
        return Err(ToolError::Invalid(format!(
            "`{}` is a folder",
            path.display()
        )));
    }
    fs::create_dir_all(dir).map_err(|e| ToolError::Io(format!("cannot create folder: {e}")))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| ToolError::Io(e.to_string()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| ToolError::Io(e.to_string()))?;
    tmp.persist(path)
        .map_err(|e| ToolError::Io(format!("cannot write `{}`: {}", path.display(), e.error)))?;
    Ok(())
}

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

/// file_edit as an agent: the call's `parameters` (or the call itself) name
/// the tool in `tool` / `action` / `operation` and carry its arguments.
impl Agent for FileEditToolkit {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn description(&self) -> &'static str {
        Self::DESCRIPTION
    }
    fn run<'a>(
        &'a self,
        call: &'a CallPayload,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, CallOutcome> {
        Box::pin(async move {
            let args = parameters(call);
            let tool = ["tool", "action", "operation"]
                .iter()
                .find_map(|k| args.get(*k).and_then(Value::as_str));
            let Some(tool) = tool else {
                return CallOutcome::failed(
                    "file_edit needs `parameters.tool`: one of read_file, write_file, edit_file, list_files",
                );
            };
            match self.call(tool, args).await {
                Ok(v) => CallOutcome::ok(v),
                Err(e) => CallOutcome::failed(e.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kit() -> (tempfile::TempDir, FileEditToolkit) {
        let dir = tempfile::tempdir().unwrap();
        let kit = FileEditToolkit::new(dir.path().join("ws")).unwrap();
        (dir, kit)
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn write_edit_read_list() {
        let (_d, k) = kit();
        k.call(
            "write_file",
            &args(json!({"path": "a/b.txt", "content": "one\ntwo\nthree\n"})),
        )
        .await
        .unwrap();
        let diff = "<<<<<<< SEARCH\ntwo\n=======\n2\n>>>>>>> REPLACE\n";
        k.call("edit_file", &args(json!({"path": "a/b.txt", "diff": diff})))
            .await
            .unwrap();
        let r = k
            .call("read_file", &args(json!({"path": "a/b.txt"})))
            .await
            .unwrap();
        assert_eq!(r["content"], "one\n2\nthree\n");
        let l = k
            .call("list_files", &args(json!({"path": "a"})))
            .await
            .unwrap();
        assert_eq!(l["entries"][0]["name"], "b.txt");
    }

    #[tokio::test]
    async fn failed_block_writes_nothing() {
        let (_d, k) = kit();
        k.call(
            "write_file",
            &args(json!({"path": "f", "content": "x\ny\n"})),
        )
        .await
        .unwrap();
        let diff = "<<<<<<< SEARCH\nx\n=======\nX\n>>>>>>> REPLACE\n<<<<<<< SEARCH\nzzz\n=======\nq\n>>>>>>> REPLACE\n";
        let e = k
            .call("edit_file", &args(json!({"path": "f", "diff": diff})))
            .await;
        assert!(matches!(e, Err(ToolError::Invalid(m)) if m.contains("block 2")));
        let r = k
            .call("read_file", &args(json!({"path": "f"})))
            .await
            .unwrap();
        assert_eq!(r["content"], "x\ny\n");
    }

    #[test]
    fn escapes_are_refused() {
        let (d, k) = kit();
        assert!(matches!(
            resolve(k.root(), "../x"),
            Err(ToolError::Refused(_))
        ));
        assert!(matches!(
            resolve(k.root(), "/etc/passwd"),
            Err(ToolError::Refused(_))
        ));
        std::os::unix::fs::symlink(d.path(), k.root().join("out")).unwrap();
        assert!(matches!(
            resolve(k.root(), "out/secret"),
            Err(ToolError::Refused(_))
        ));
        std::os::unix::fs::symlink("/nonexistent/x", k.root().join("dangling")).unwrap();
        assert!(matches!(
            resolve(k.root(), "dangling"),
            Err(ToolError::Refused(_))
        ));
        std::fs::create_dir(k.root().join("in")).unwrap();
        std::os::unix::fs::symlink(k.root().join("in"), k.root().join("alias")).unwrap();
        assert!(resolve(k.root(), "alias/new.txt").is_ok());
    }
}
