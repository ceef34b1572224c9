//! `dbt deps` for a session's clone, with a cache shared by sessions.
//!
//! A project that declares packages (`packages.yml` or `dependencies.yml`)
//! cannot compile without them, and a fresh clone has none. The installed
//! packages are cached under a key made of the package files and, for
//! `local:` packages, the files of those packages, so a repeat costs a copy.
//! A cache entry is written to a temporary folder and renamed into place, so
//! two sessions filling the same key never see half an entry.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Dbt;

/// The files that declare or pin packages.
const PACKAGE_FILES: &[&str] = &["packages.yml", "dependencies.yml", "package-lock.yml"];

/// How the packages got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The project declares no packages.
    NoPackages,
    /// Copied from the cache.
    FromCache,
    /// `dbt deps` ran (and filled the cache).
    Fresh,
}

/// Installs the project's packages into `<project>/<packages_path>`.
pub async fn install(
    dbt: &Dbt,
    project: &Path,
    packages_path: &str,
    cache_root: &Path,
) -> Result<Installed> {
    let Some(key) = cache_key(project)? else {
        return Ok(Installed::NoPackages);
    };
    let dest = project.join(packages_path);
    let entry = cache_root.join("dbt-packages").join(&key);
    if entry.is_dir() {
        copy_tree(&entry, &dest).context("copying packages from the cache")?;
        return Ok(Installed::FromCache);
    }
    let run = dbt.run(project, &["deps".to_string()]).await?;
    if !run.success {
        bail!("`dbt deps` failed:\n{}", super::error_lines(&run.output, 8));
    }
    // Fill the cache; a failure here costs the next session a `dbt deps`, nothing more.
    if dest.is_dir() {
        let tmp = cache_root
            .join("dbt-packages")
            .join(format!(".{key}.{}", std::process::id()));
        let filled = copy_tree(&dest, &tmp).and_then(|_| {
            std::fs::rename(&tmp, &entry).or_else(|e| {
                // Another session filled it first.
                if entry.is_dir() {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
            Ok(())
        });
        if let Err(e) = filled {
            tracing::warn!(error = %format!("{e:#}"), "could not cache dbt packages");
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    Ok(Installed::Fresh)
}

/// The cache key of the project's packages; None when it declares none.
fn cache_key(project: &Path) -> Result<Option<String>> {
    let mut hasher = Sha256::new();
    let mut declared = false;
    for name in PACKAGE_FILES {
        let path = project.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        feed(&mut hasher, name.as_bytes());
        feed(&mut hasher, text.as_bytes());
        if *name == "package-lock.yml" {
            continue;
        }
        let doc: Value = serde_saphyr::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let packages = doc
            .get("packages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        declared |= !packages.is_empty();
        for local in packages
            .iter()
            .filter_map(|p| p.get("local").and_then(Value::as_str))
        {
            hash_tree(&project.join(local), &mut hasher)
                .with_context(|| format!("reading local package {local}"))?;
        }
    }
    let key: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(declared.then_some(key))
}

/// Hashes every file's path and content under `dir`, in a stable order.
/// Adds `bytes` with their length, so that two fields can't run together.
fn feed(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn hash_tree(dir: &Path, hasher: &mut Sha256) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if matches!(name.as_str(), "target" | "logs" | "dbt_packages" | ".git") {
            continue;
        }
        feed(hasher, name.as_bytes());
        if path.is_dir() {
            hash_tree(&path, hasher)?;
        } else {
            feed(hasher, &std::fs::read(&path)?);
        }
    }
    Ok(())
}

/// Copies `src` into `dst`, following symlinks (`dbt deps` links `local:` packages).
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let to = dst.join(path.file_name().expect("read_dir entries have names"));
        if path.is_dir() {
            copy_tree(&path, &to)?;
        } else {
            std::fs::copy(&path, &to).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_package_files_and_local_packages() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        assert_eq!(cache_key(p).unwrap(), None, "no package files: no packages");
        std::fs::write(p.join("packages.yml"), "packages: []\n").unwrap();
        assert_eq!(
            cache_key(p).unwrap(),
            None,
            "an empty list declares nothing"
        );

        std::fs::create_dir_all(p.join("pkgs/util/macros")).unwrap();
        std::fs::write(
            p.join("pkgs/util/macros/m.sql"),
            "{% macro m() %}1{% endmacro %}",
        )
        .unwrap();
        std::fs::write(p.join("packages.yml"), "packages:\n  - local: pkgs/util\n").unwrap();
        let first = cache_key(p).unwrap().expect("declares a package");
        assert_eq!(cache_key(p).unwrap(), Some(first.clone()), "stable");

        std::fs::write(
            p.join("pkgs/util/macros/m.sql"),
            "{% macro m() %}2{% endmacro %}",
        )
        .unwrap();
        let changed = cache_key(p).unwrap().unwrap();
        assert_ne!(changed, first, "a local package's change is a new key");

        std::fs::write(p.join("package-lock.yml"), "packages: []\nsha1_hash: x\n").unwrap();
        assert_ne!(
            cache_key(p).unwrap().unwrap(),
            changed,
            "the lock file is part of the key"
        );
    }
}
