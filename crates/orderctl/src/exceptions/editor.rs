//! Editing a message body in the operator's editor.

use super::Failure;
use orderflow_ops::Kind;
use orderflow_ops::exceptions::EditSubject;
use std::process::Command;

/// Opens the body in `$VISUAL`, `$EDITOR` or `vi` (JSON pretty-printed),
/// and returns what was saved (JSON compacted again). An unchanged body is
/// refused: there is nothing to send.
pub fn edit(subject: &EditSubject) -> Result<Vec<u8>, Failure> {
    let failed = |text: String| Failure {
        kind: Kind::Failed,
        text,
    };
    let original: Option<serde_json::Value> = serde_json::from_slice(&subject.body).ok();
    let shown = match &original {
        Some(value) => serde_json::to_vec_pretty(value).expect("JSON values serialize"),
        None => subject.body.clone(),
    };
    let safe: String = subject
        .message
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let path =
        std::env::temp_dir().join(format!("orderctl-edit-{safe}-{}.json", std::process::id()));
    std::fs::write(&path, &shown)
        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_owned());
    // Through the shell, so EDITOR may carry arguments (`code --wait`).
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .map_err(|e| failed(format!("cannot start the editor `{editor}`: {e}")))?;
    if !status.success() {
        let _ = std::fs::remove_file(&path);
        return Err(failed(format!(
            "the editor `{editor}` exited with {status}; nothing was sent"
        )));
    }
    let edited =
        std::fs::read(&path).map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
    let _ = std::fs::remove_file(&path);
    let body = match serde_json::from_slice::<serde_json::Value>(&edited) {
        Ok(value) if Some(&value) == original.as_ref() => {
            return Err(Failure {
                kind: Kind::Invalid,
                text: "the body is unchanged: nothing to send".into(),
            });
        }
        Ok(value) => serde_json::to_vec(&value).expect("JSON values serialize"),
        Err(_) => edited,
    };
    Ok(body)
}
