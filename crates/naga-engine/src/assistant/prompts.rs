//! System prompts: embedded defaults, each overridable by a file
//! `<data_dir>/prompts/<name>.md`.

use std::path::Path;

#[derive(Debug, Clone)]
pub struct Prompts {
    pub system: String,
    pub analyzer: String,
    pub followup: String,
}

impl Prompts {
    pub fn load(dir: &Path) -> Self {
        let read = |name: &str, default: &str| {
            let path = dir.join(format!("{name}.md"));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    tracing::info!(prompt = name, path = %path.display(), "prompt overridden by file");
                    text
                }
                Err(_) => default.to_owned(),
            }
        };
        Self {
            system: read("system", include_str!("../../prompts/system.md")),
            analyzer: read("analyzer", include_str!("../../prompts/analyzer.md")),
            followup: read("followup", include_str!("../../prompts/followup.md")),
        }
    }
}
