//! Per-model loopback addresses: each model reserves a second octet `M`
//! (1–254) by creating `/tmp/juju-local-nets/M`, and unit `<app-index>/<n>`
//! gets `127.M.<app-index>.<n+1>`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

fn registry() -> PathBuf {
    PathBuf::from("/tmp/juju-local-nets")
}

/// Reserves a free octet for the model at `model_dir`.
pub fn reserve(model_dir: &Path) -> Result<u8> {
    let dir = registry();
    if !dir.exists() {
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777));
    }
    for m in 1..=254u8 {
        let path = dir.join(m.to_string());
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                let _ = writeln!(f, "{}", model_dir.display());
                return Ok(m);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Reclaim the octet of a model directory that no longer exists.
                let owner = fs::read_to_string(&path).unwrap_or_default();
                let owner = owner.trim();
                if !owner.is_empty() && !Path::new(owner).exists() {
                    let _ = fs::remove_file(&path);
                    if let Ok(mut f) = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                    {
                        let _ = writeln!(f, "{}", model_dir.display());
                        return Ok(m);
                    }
                }
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    bail!("no free address octet left under {}", dir.display())
}

/// Frees the model's octet.
pub fn release(octet: u8) {
    let _ = fs::remove_file(registry().join(octet.to_string()));
}

pub fn address(octet: u8, app_index: u32, unit: u32) -> String {
    format!("127.{octet}.{app_index}.{}", unit + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses() {
        assert_eq!(super::address(42, 1, 0), "127.42.1.1");
        assert_eq!(super::address(42, 2, 3), "127.42.2.4");
    }
}
