//! The file_edit toolkit: read, write, list and edit (SEARCH/REPLACE blocks)
//! files confined to one root directory. Absolute paths, `..` and symlinks
//! that lead out of the root are refused.

mod diff;

pub use diff::{apply_blocks, parse_blocks, Block};

use super::{parameters, Agent, CallContext, CallOutcome};
use cap_std::{ambient_authority, fs::Dir};
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
    // Every operation goes through this handle: paths are resolved under it
    // one component at a time and never leave it (no `..`, no absolute or
    // escaping symlink, even one planted while the operation runs).
    let dir = Dir::open_ambient_dir(root, ambient_authority())
        .map_err(|e| ToolError::Io(format!("cannot open the workspace: {e}")))?;
    match tool {
        "read_file" => {
            let rel = str_arg(args, "path")?;
            let path = resolve(root, rel)?;
            let content = read_text(&dir, rel, &path)?;
            let size = content.len();
            Ok(json!({"path": rel, "content": content, "size": size}))
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
            write_atomic(&dir, rel, &path, content.as_bytes())?;
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
            let original = match read_text(&dir, rel, &path) {
                Ok(s) => s,
                Err(ToolError::NotFound(_)) => String::new(),
                Err(e) => return Err(e),
            };
            let edited = apply_blocks(&original, &blocks)?;
            write_atomic(&dir, rel, &path, edited.as_bytes())?;
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
            for entry in dir.read_dir(&path).map_err(|e| not_found(rel, e))? {
                let entry = entry.map_err(|e| ToolError::Io(e.to_string()))?;
                let kind = entry
                    .file_type()
                    .map_err(|e| ToolError::Io(e.to_string()))?;
                let size = match kind.is_symlink() {
                    true => 0,
                    false => entry.metadata().map_or(0, |m| m.len()),
                };
                let kind = if kind.is_dir() {
                    "dir"
                } else if kind.is_symlink() {
                    "symlink"
                } else {
                    "file"
                };
                entries.push(json!({"name": entry.file_name().to_string_lossy(),
                                    "type": kind, "size": size}));
            }
            entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            Ok(json!({"path": rel, "entries": entries}))
        }
        "create_directory" => {
            let rel = str_arg(args, "path")?;
            let path = resolve(root, rel)?;
            ensure_dir(&dir, rel, &path)?;
            Ok(json!({"path": rel, "created": true}))
        }
        "delete_file" => {
            let rel = str_arg(args, "path")?;
            let path = resolve(root, rel)?;
            let meta = dir.symlink_metadata(&path).map_err(|e| not_found(rel, e))?;
            if meta.is_dir() {
                return Err(ToolError::Invalid(format!(
                    "`{rel}` is a folder: delete_file deletes files"
                )));
            }
            // (Removes the name: a symlink's target or a hard link's other
            // names are untouched.)
            dir.remove_file(&path).map_err(|e| io_error(rel, e))?;
            Ok(json!({"path": rel, "deleted": true}))
        }
        other => Err(ToolError::UnknownTool(other.to_owned())),
    }
}

/// A text file of the workspace, read through the handle: at most
/// `MAX_READ_BYTES`, and not a hard link (a file with other names may be
/// one outside the workspace).
fn read_text(dir: &Dir, rel: &str, path: &Path) -> Result<String, ToolError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let file = dir.open(path).map_err(|e| not_found(rel, e))?.into_std();
    let meta = file.metadata().map_err(|e| io_error(rel, e))?;
    if !meta.is_file() {
        return Err(ToolError::Invalid(format!("`{rel}` is not a file")));
    }
    if meta.nlink() > 1 {
        return Err(ToolError::Refused(format!(
            "`{rel}` has other names (a hard link): it may be a file outside the workspace"
        )));
    }
    if meta.len() > MAX_READ_BYTES {
        return Err(ToolError::Refused(format!(
            "`{rel}` has {} bytes; read_file returns at most {MAX_READ_BYTES}",
            meta.len()
        )));
    }
    let mut content = String::new();
    file.take(MAX_READ_BYTES + 1)
        .read_to_string(&mut content)
        .map_err(|e| io_error(rel, e))?;
    Ok(content)
}

fn not_found(rel: &str, e: std::io::Error) -> ToolError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ToolError::NotFound(format!("`{rel}` does not exist in the workspace"))
    } else {
        io_error(rel, e)
    }
}

/// An I/O error: the request's fault where the path or the file's content
/// is (not text, a directory, a name too long, a way out of the
/// workspace), else the machine's.
fn io_error(rel: &str, e: std::io::Error) -> ToolError {
    use std::io::ErrorKind::*;
    match e.kind() {
        InvalidData => ToolError::Invalid(format!("`{rel}` is not UTF-8 text")),
        NotFound => not_found(rel, e),
        IsADirectory | NotADirectory | InvalidFilename | InvalidInput => {
            ToolError::Invalid(format!("`{rel}`: {e}"))
        }
        // (cap-std: a symlink on the path leads out of the workspace.)
        PermissionDenied => ToolError::Refused(format!(
            "`{rel}`: a symlink on this path leads out of the workspace, or access is denied"
        )),
        _ => ToolError::Io(format!("`{rel}`: {e}")),
    }
}

/// Longest path accepted, and longest name in it, in bytes (Linux's).
const MAX_PATH_BYTES: usize = 4096;
const MAX_NAME_BYTES: usize = 255;
/// Largest file write_file or edit_file writes.
const MAX_WRITE_BYTES: usize = 4 * 1024 * 1024;

/// Checks a workspace-relative path as written (no absolute path, no
/// `..`, bounded lengths) and returns it, without `.` parts (`.` for the
/// workspace itself). Symlinks are the handle's to refuse, as each
/// operation walks the path.
pub fn resolve(_root: &Path, rel: &str) -> Result<PathBuf, ToolError> {
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
    let mut clean = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(name) if name.len() > MAX_NAME_BYTES => {
                return Err(ToolError::Invalid(format!(
                    "`{}…`: a file name has at most {MAX_NAME_BYTES} bytes",
                    rel.chars().take(40).collect::<String>()
                )))
            }
            Component::Normal(name) => clean.push(name),
            Component::CurDir => {}
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
    if clean.as_os_str().is_empty() {
        clean.push(".");
    }
    Ok(clean)
}

/// Makes `path` a folder of the workspace if it is not one (its missing
/// parents too). A name on the way that is a symlink out is refused.
fn ensure_dir(dir: &Dir, rel: &str, path: &Path) -> Result<(), ToolError> {
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    match dir.metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ToolError::Invalid(format!(
            "`{rel}`: `{}` is a file, not a folder",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                ensure_dir(dir, rel, parent)?;
            }
            match dir.create_dir(path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Made meanwhile (or a name that is not a folder here).
                    match dir.metadata(path) {
                        Ok(m) if m.is_dir() => Ok(()),
                        Ok(_) => Err(io_error(rel, e)),
                        Err(e) => Err(io_error(rel, e)),
                    }
                }
                r => r.map_err(|e| io_error(rel, e)),
            }
        }
        Err(e) => Err(io_error(rel, e)),
    }
}

/// Writes through a temporary file and a rename inside the workspace
/// handle, so a reader never sees half a file and the bytes land where the
/// path leads inside the workspace, or nowhere.
fn write_atomic(dir: &Dir, rel: &str, path: &Path, bytes: &[u8]) -> Result<(), ToolError> {
    if bytes.len() > MAX_WRITE_BYTES {
        return Err(ToolError::Refused(format!(
            "`{rel}`: {} bytes; a file written has at most {MAX_WRITE_BYTES}",
            bytes.len()
        )));
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(ToolError::Invalid("a file path is required".into()));
    };
    ensure_dir(dir, rel, parent)?;
    if dir.symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(ToolError::Invalid(format!("`{rel}` is a folder")));
    }
    let tmp = parent.join(format!(
        ".{}.naga-{:016x}.tmp",
        name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut file = dir.open_with(
            &tmp,
            cap_std::fs::OpenOptions::new().write(true).create_new(true),
        )?;
        file.write_all(bytes)?;
        file.sync_all()?;
        dir.rename(&tmp, dir, path)
    })();
    if let Err(e) = written {
        let _ = dir.remove_file(&tmp);
        return Err(io_error(rel, e));
    }
    Ok(())
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

    fn call(k: &FileEditToolkit, tool: &str, v: Value) -> Result<Value, ToolError> {
        call_blocking(k.root(), tool, &args(v))
    }

    #[test]
    fn escapes_are_refused() {
        let (d, k) = kit();
        std::fs::write(d.path().join("secret"), "outside").unwrap();
        for path in ["../secret", "/etc/passwd", "a/../../secret"] {
            let read = call(&k, "read_file", json!({"path": path}));
            assert!(
                matches!(read, Err(ToolError::Refused(_))),
                "{path}: {read:?}"
            );
        }
        // A symlink out of the workspace (absolute or relative) is refused
        // for every operation.
        std::os::unix::fs::symlink(d.path(), k.root().join("out")).unwrap();
        std::os::unix::fs::symlink("../..", k.root().join("up")).unwrap();
        for base in ["out", "up"] {
            let path = format!("{base}/secret");
            for (tool, extra) in [
                ("read_file", json!({})),
                ("write_file", json!({"content": "x"})),
                (
                    "edit_file",
                    json!({"diff": "<<<<<<< SEARCH\noutside\n=======\nX\n>>>>>>> REPLACE\n"}),
                ),
                ("delete_file", json!({})),
                ("list_files", json!({})),
                ("create_directory", json!({})),
            ] {
                let mut a = extra.as_object().unwrap().clone();
                a.insert("path".into(), json!(path));
                let r = call_blocking(k.root(), tool, &a);
                assert!(
                    matches!(r, Err(ToolError::Refused(_))),
                    "{tool} {path}: {r:?}"
                );
            }
        }
        assert_eq!(
            std::fs::read_to_string(d.path().join("secret")).unwrap(),
            "outside"
        );
        std::os::unix::fs::symlink("/nonexistent/x", k.root().join("dangling")).unwrap();
        // Written over, the symlink itself is replaced: nothing outside.
        call(
            &k,
            "write_file",
            json!({"path": "dangling", "content": "x"}),
        )
        .unwrap();
        assert!(!Path::new("/nonexistent/x").exists());
        assert!(std::fs::symlink_metadata(k.root().join("dangling"))
            .unwrap()
            .is_file());
        // A hard link to a file outside is not read.
        std::fs::hard_link(d.path().join("secret"), k.root().join("linked")).unwrap();
        let r = call(&k, "read_file", json!({"path": "linked"}));
        assert!(matches!(r, Err(ToolError::Refused(_))), "{r:?}");
        // Inside the workspace, a relative symlink is followed.
        std::fs::create_dir(k.root().join("in")).unwrap();
        std::os::unix::fs::symlink("in", k.root().join("alias")).unwrap();
        call(
            &k,
            "write_file",
            json!({"path": "alias/new.txt", "content": "ok"}),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(k.root().join("in/new.txt")).unwrap(),
            "ok"
        );
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_while_writing_lets_nothing_out() {
        let (d, k) = kit();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let sub = k.root().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (stop, sub, outside) = (stop.clone(), sub.clone(), outside.clone());
            std::thread::spawn(move || {
                let parked = sub.with_file_name("parked");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // The real folder moves aside and a symlink out takes
                    // its name, then back.
                    let _ = std::fs::rename(&sub, &parked);
                    let _ = std::os::unix::fs::symlink(&outside, &sub);
                    std::thread::yield_now();
                    let _ = std::fs::remove_file(&sub);
                    let _ = std::fs::rename(&parked, &sub);
                    std::thread::yield_now();
                }
            })
        };
        let mut written = 0;
        for i in 0..600 {
            let path = format!("sub/f{i}.txt");
            let tool = if i % 2 == 0 {
                "write_file"
            } else {
                "create_directory"
            };
            if call(&k, tool, json!({"path": path, "content": "x"})).is_ok() {
                written += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        let escaped: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
        assert!(
            escaped.is_empty(),
            "{} writes landed outside",
            escaped.len()
        );
        // (How many got through depends on the timing: none may.) Once the
        // swapping stops, the folder takes writes again.
        eprintln!("{written} of 600 writes and creations went through, inside");
        call(
            &k,
            "write_file",
            json!({"path": "sub/after.txt", "content": "x"}),
        )
        .unwrap();
        assert!(sub.join("after.txt").is_file());
    }
}
