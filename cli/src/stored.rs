//! The sign-in `pergola login` keeps for the next commands: the server and an API token, in
//! `$XDG_CONFIG_HOME/pergola/config.toml` (else `~/.config/pergola/config.toml`), a file only
//! its owner may read.

use crate::client::Failure;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The server used when neither `--server`, `PERGOLA_URL` nor a sign-in names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:3000";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The server signed in to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The API token (`pgt_…`) for that server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Where the sign-in is kept; `None` without a home directory.
pub fn path() -> Option<PathBuf> {
    let from_env = |name: &str| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    let base = from_env("XDG_CONFIG_HOME").or_else(|| {
        if cfg!(windows) {
            from_env("APPDATA")
        } else {
            from_env("HOME").map(|home| home.join(".config"))
        }
    })?;
    Some(base.join("pergola").join("config.toml"))
}

/// A server URL as it is compared and stored: without a trailing slash.
pub fn normalize(server: &str) -> String {
    server.trim().trim_end_matches('/').to_owned()
}

/// The stored sign-in; empty when there is none.
pub fn load() -> Result<Stored, Failure> {
    let Some(path) = path() else { return Ok(Stored::default()) };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Stored::default()),
        Err(e) => return Err(Failure::new(format!("cannot read {}: {e}", path.display()))),
    };
    toml::from_str(&text).map_err(|e| {
        Failure::new(format!(
            "{} is not a valid sign-in file ({}); sign in again with `pergola login`.",
            path.display(),
            e.message()
        ))
    })
}

/// Replaces the stored sign-in, returning where it was written. The file is created readable
/// by its owner only (0600, in a 0700 directory) and then moved into place, so the token is
/// never in a file anyone else may read.
pub fn save(stored: &Stored) -> Result<PathBuf, Failure> {
    let path = path().ok_or_else(|| {
        Failure::new("cannot find your home directory to keep the sign-in: set HOME or XDG_CONFIG_HOME.".into())
    })?;
    let text = toml::to_string(stored).expect("a sign-in is plain TOML");
    write_private(&path, &text).map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().expect("the file is in a directory");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let temp = dir.join(format!(".config.toml.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&temp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_leaves_out_what_is_missing() {
        let stored = Stored { server: Some("http://h:3000".into()), token: Some("pgt_x\"y".into()) };
        let text = toml::to_string(&stored).unwrap();
        assert_eq!(toml::from_str::<Stored>(&text).unwrap(), stored);
        let no_token = Stored { token: None, ..stored };
        assert_eq!(toml::to_string(&no_token).unwrap(), "server = \"http://h:3000\"\n");
        assert_eq!(toml::from_str::<Stored>("").unwrap(), Stored::default());
    }

    #[test]
    fn servers_compare_without_a_trailing_slash() {
        assert_eq!(normalize(" http://h:3000/ "), "http://h:3000");
    }
}
