//! Unpacking a packed `.charm` (a zip) into a directory, keeping the unix
//! modes recorded in the archive (dispatch must stay executable).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context as _, Result};

pub fn extract(src: &Path, dest: &Path) -> Result<()> {
    let file = fs::File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip archive", src.display()))?;
    crate::fsutil::create_dir_shared(dest)?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .with_context(|| format!("cannot read entry {i} of {}", src.display()))?;
        let Some(rel) = entry.enclosed_name() else {
            bail!("{} has an unsafe path {:?}", src.display(), entry.name());
        };
        let out = dest.join(rel);
        if entry.is_dir() {
            crate::fsutil::create_dir_shared(&out)?;
            continue;
        }
        if let Some(parent) = out.parent() {
            crate::fsutil::create_dir_shared(parent)?;
        }
        let mut f =
            fs::File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
        io::copy(&mut entry, &mut f).with_context(|| format!("cannot write {}", out.display()))?;
        let mode = entry.unix_mode().unwrap_or(0o644) & 0o7777;
        let mode = if mode == 0 { 0o644 } else { mode | 0o444 };
        fs::set_permissions(&out, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", out.display()))?;
    }
    Ok(())
}
