//! The project directory as the model sees it: file tools that cannot leave it.
//!
//! Every path the model gives is relative to the project root. Absolute paths,
//! `..` components, `.git` (which may hold the clone's credentials) and
//! symbolic links that lead outside the root are refused with an error the
//! model can read. Walks never follow symbolic links and skip build output
//! (`target`, `logs`, `dbt_packages`, …).

use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

/// Folders never searched: VCS data, dbt build output, installed packages.
const SKIPPED_DIRS: &[&str] = &[
    ".git",
    "target",
    "dbt_packages",
    "logs",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
];

/// Caps that keep one tool result small enough for the model's context.
const MAX_READ_BYTES: usize = 64 * 1024;
const MAX_READ_LINES: usize = 2000;
const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;
const MAX_WRITE_BYTES: usize = 1024 * 1024;
const MAX_MATCHES: usize = 100;
const MAX_PATHS: usize = 200;
const MAX_WALKED: usize = 20_000;
const MAX_MATCH_LINE: usize = 240;

/// The project root and the file tools that work inside it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Canonical: every resolved path is compared against it.
    root: PathBuf,
}

impl Sandbox {
    pub fn new(root: &Path) -> std::io::Result<Sandbox> {
        Ok(Sandbox {
            root: root.canonicalize()?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a model-given path to one inside the root; it need not exist
    /// (a file about to be written), but every part of it that exists must
    /// stay inside the root once symbolic links are followed.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        let trimmed = path.trim();
        let rel = Path::new(trimmed);
        if rel.is_absolute() || trimmed.starts_with('~') {
            return Err(format!(
                "`{trimmed}` is outside the project: give a path relative to the project root, e.g. models/marts/orders.sql"
            ));
        }
        let mut joined = self.root.clone();
        for part in rel.components() {
            match part {
                Component::CurDir => {}
                Component::Normal(name) if name == ".git" => return Err(
                    ".git is off limits: use run_terminal_command with git status|diff|log|show"
                        .into(),
                ),
                Component::Normal(name) => joined.push(name),
                Component::ParentDir => {
                    return Err(format!(
                        "`{trimmed}` uses `..`: paths must stay inside the project"
                    ))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(format!("`{trimmed}` is outside the project"))
                }
            }
        }
        // Follow links in the part that exists; what does not exist yet is
        // made of plain names, so it cannot leave.
        let mut existing = joined.as_path();
        loop {
            if existing.symlink_metadata().is_ok() {
                break;
            }
            existing = match existing.parent() {
                Some(p) => p,
                None => break,
            };
        }
        let real = existing.canonicalize().map_err(|_| {
            format!("`{trimmed}` goes through a broken symbolic link, which is refused")
        })?;
        if !real.starts_with(&self.root) {
            return Err(format!(
                "`{trimmed}` leads outside the project through a symbolic link, which is refused"
            ));
        }
        Ok(joined)
    }

    /// The path relative to the root, with `/` separators, for messages.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    }

    /// `read_file`: the file's text (or a directory's listing), lines
    /// `start..=end` when asked, capped.
    pub fn read(&self, path: &str, start: Option<u64>, end: Option<u64>) -> Result<String, String> {
        let full = self.resolve(path)?;
        let rel = self.relative(&full);
        let meta = std::fs::metadata(&full).map_err(|_| format!("`{rel}` does not exist"))?;
        if meta.is_dir() {
            return self.list_dir(&full);
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!("`{rel}` is {} bytes; too big to read", meta.len()));
        }
        let bytes = std::fs::read(&full).map_err(|e| format!("reading `{rel}`: {e}"))?;
        if bytes.contains(&0) {
            return Err(format!("`{rel}` is a binary file"));
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let total = lines.len();
        let first = start.unwrap_or(1).max(1) as usize;
        let last = end.map(|e| e as usize).unwrap_or(total).min(total);
        if total == 0 {
            return Ok(format!("{rel} is empty"));
        }
        if first > last {
            return Err(format!(
                "`{rel}` has {total} lines; lines {first}..{last} are empty"
            ));
        }
        let mut out = String::new();
        let mut shown = first;
        for (i, line) in lines[first - 1..last].iter().enumerate() {
            if out.len() + line.len() > MAX_READ_BYTES || i >= MAX_READ_LINES {
                break;
            }
            out.push_str(line);
            out.push('\n');
            shown = first + i;
        }
        let header = if first == 1 && shown == total {
            format!("{rel} ({total} lines)\n")
        } else {
            format!(
                "{rel} (lines {first}-{shown} of {total}; ask for start_line/end_line to see more)\n"
            )
        };
        Ok(header + &out)
    }

    fn list_dir(&self, dir: &Path) -> Result<String, String> {
        let rel = self.relative(dir);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| format!("listing `{rel}`: {e}"))?
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir {
                    format!("{name}/")
                } else {
                    name
                }
            })
            .filter(|n| n != ".git/")
            .collect();
        names.sort();
        let shown = if rel.is_empty() { "." } else { &rel };
        Ok(format!("{shown}/ is a directory:\n{}", names.join("\n")))
    }

    /// `write_file`: replaces (or creates) a file. Returns the relative path.
    pub fn write(&self, path: &str, content: &str) -> Result<String, String> {
        if content.len() > MAX_WRITE_BYTES {
            return Err(format!(
                "content is {} bytes; at most {MAX_WRITE_BYTES}",
                content.len()
            ));
        }
        let full = self.resolve(path)?;
        let rel = self.relative(&full);
        if rel.is_empty() || full.is_dir() {
            return Err(format!("`{path}` is a directory"));
        }
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating folders for `{rel}`: {e}"))?;
        }
        // A link inside the project that points at another file inside it is
        // fine; `resolve` already refused one that leads out.
        std::fs::write(&full, content).map_err(|e| format!("writing `{rel}`: {e}"))?;
        Ok(rel)
    }

    /// `apply_patch`: replaces the one exact occurrence of `find`.
    pub fn patch(&self, path: &str, find: &str, replace: &str) -> Result<String, String> {
        if find.is_empty() {
            return Err("`find` is empty; give the exact text to replace".into());
        }
        let full = self.resolve(path)?;
        let rel = self.relative(&full);
        let text = std::fs::read_to_string(&full)
            .map_err(|_| format!("`{rel}` does not exist or is not text"))?;
        match text.matches(find).count() {
            0 => Err(format!(
                "the `find` text does not occur in `{rel}`; read the file and copy the text exactly, whitespace included"
            )),
            1 => {
                std::fs::write(&full, text.replacen(find, replace, 1))
                    .map_err(|e| format!("writing `{rel}`: {e}"))?;
                Ok(rel)
            }
            n => Err(format!(
                "the `find` text occurs {n} times in `{rel}`; include more surrounding lines so that it occurs once"
            )),
        }
    }

    /// `ripgrep_search`: lines matching a regular expression, as `path:line: text`.
    pub fn grep(
        &self,
        pattern: &str,
        path: Option<&str>,
        glob: Option<&str>,
    ) -> Result<String, String> {
        let re = RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("invalid regular expression: {e}"))?;
        let glob = glob.map(Glob::new).transpose()?;
        let start = self.resolve(path.unwrap_or("."))?;
        let mut files = Vec::new();
        self.walk(&start, &mut |p, is_dir| {
            if !is_dir {
                files.push(p.to_path_buf());
            }
        });
        let mut hits = Vec::new();
        let mut more = 0usize;
        for file in files {
            let rel = self.relative(&file);
            if glob.as_ref().is_some_and(|g| !g.matches(&rel)) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            if meta.len() > MAX_FILE_BYTES {
                continue;
            }
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            if bytes.contains(&0) {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            for (n, line) in text.lines().enumerate() {
                if re.is_match(line) {
                    if hits.len() < MAX_MATCHES {
                        let line =
                            crate::agent::protocol::truncate(line.trim_end(), MAX_MATCH_LINE);
                        hits.push(format!("{rel}:{}: {line}", n + 1));
                    } else {
                        more += 1;
                    }
                }
            }
        }
        if hits.is_empty() {
            return Ok(format!("no matches for /{pattern}/"));
        }
        let mut out = hits.join("\n");
        if more > 0 {
            out.push_str(&format!(
                "\n… and {more} more matches; narrow the pattern, path or glob"
            ));
        }
        Ok(out)
    }

    /// `search_files_and_directories`: paths containing `query` (case-insensitive),
    /// or matching it as a glob when it has `*`, `?` or `{`.
    pub fn find(&self, query: &str) -> Result<String, String> {
        let query = query.trim();
        let glob = query
            .contains(['*', '?', '{'])
            .then(|| Glob::new(query))
            .transpose()?;
        let needle = query.to_lowercase();
        let mut found = Vec::new();
        let mut more = 0usize;
        self.walk(&self.root.clone(), &mut |p, is_dir| {
            let rel = self.relative(p);
            if rel.is_empty() {
                return;
            }
            let hit = match &glob {
                Some(g) => g.matches(&rel),
                None => rel.to_lowercase().contains(&needle),
            };
            if hit {
                if found.len() < MAX_PATHS {
                    found.push(if is_dir { format!("{rel}/") } else { rel });
                } else {
                    more += 1;
                }
            }
        });
        if found.is_empty() {
            return Ok(format!("nothing matches `{query}`"));
        }
        found.sort();
        let mut out = found.join("\n");
        if more > 0 {
            out.push_str(&format!("\n… and {more} more"));
        }
        Ok(out)
    }

    /// Visits `start` and everything below it, without following links.
    fn walk(&self, start: &Path, visit: &mut dyn FnMut(&Path, bool)) {
        let mut stack = vec![start.to_path_buf()];
        let mut seen = 0usize;
        while let Some(path) = stack.pop() {
            seen += 1;
            if seen > MAX_WALKED {
                break;
            }
            let Ok(meta) = path.symlink_metadata() else {
                continue;
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.is_dir() {
                if path != start {
                    visit(&path, true);
                }
                let Ok(entries) = std::fs::read_dir(&path) else {
                    continue;
                };
                let mut children: Vec<PathBuf> = entries
                    .flatten()
                    .filter(|e| {
                        let name = e.file_name();
                        !SKIPPED_DIRS.iter().any(|s| name == *s)
                    })
                    .map(|e| e.path())
                    .collect();
                children.sort();
                children.reverse();
                stack.extend(children);
            } else {
                visit(&path, false);
            }
        }
    }
}

/// A glob: `*` within a name, `**` across folders, `?`, `{a,b}`. Without a
/// `/` it matches the file name alone (`*.sql`), like ripgrep's `--glob`.
struct Glob {
    re: Regex,
    whole_path: bool,
}

static GLOB_SPECIAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\*\*/?|\*|\?|\{|\}|,").expect("static regex"));

impl Glob {
    fn new(glob: &str) -> Result<Glob, String> {
        let mut re = String::from("^");
        let mut last = 0;
        let mut depth = 0usize;
        for m in GLOB_SPECIAL.find_iter(glob) {
            re.push_str(&regex::escape(&glob[last..m.start()]));
            last = m.end();
            let part = match m.as_str() {
                "**/" => "(?:.*/)?".to_string(),
                "**" => ".*".to_string(),
                "*" => "[^/]*".to_string(),
                "?" => "[^/]".to_string(),
                "{" => {
                    depth += 1;
                    "(?:".to_string()
                }
                "}" if depth > 0 => {
                    depth -= 1;
                    ")".to_string()
                }
                "," if depth > 0 => "|".to_string(),
                other => regex::escape(other),
            };
            re.push_str(&part);
        }
        re.push_str(&regex::escape(&glob[last..]));
        re.push('$');
        if depth > 0 {
            return Err(format!("invalid glob `{glob}`: unclosed {{"));
        }
        Ok(Glob {
            re: Regex::new(&re).map_err(|e| format!("invalid glob `{glob}`: {e}"))?,
            whole_path: glob.contains('/'),
        })
    }

    fn matches(&self, rel: &str) -> bool {
        if self.whole_path {
            self.re.is_match(rel)
        } else {
            self.re.is_match(rel.rsplit('/').next().unwrap_or(rel))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> (tempfile::TempDir, tempfile::TempDir, Sandbox) {
        let outside = tempfile::tempdir().expect("temp dir");
        std::fs::write(outside.path().join("secret.txt"), "password=hunter22").expect("write");
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("models/marts")).expect("mkdir");
        std::fs::create_dir_all(root.join(".git")).expect("mkdir");
        std::fs::create_dir_all(root.join("target")).expect("mkdir");
        std::fs::write(root.join(".git/config"), "url = https://token@github.com/x")
            .expect("write");
        std::fs::write(root.join("target/compiled.sql"), "select stg_orders").expect("write");
        std::fs::write(
            root.join("models/marts/orders.sql"),
            "with orders as (\n    select * from {{ ref('stg_order') }}\n)\nselect * from orders\n",
        )
        .expect("write");
        std::fs::write(root.join("models/schema.yml"), "version: 2\n").expect("write");
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).expect("symlink");
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            root.join("models/leak.sql"),
        )
        .expect("symlink");
        std::os::unix::fs::symlink(
            root.join("models/schema.yml"),
            root.join("models/alias.yml"),
        )
        .expect("symlink");
        std::os::unix::fs::symlink(
            outside.path().join("nope"),
            root.join("models/dangling.sql"),
        )
        .expect("symlink");
        let sandbox = Sandbox::new(root).expect("sandbox");
        (tmp, outside, sandbox)
    }

    #[test]
    fn paths_that_escape_the_project_are_refused() {
        let (_tmp, _outside, sb) = project();
        let refused: &[(&str, &str)] = &[
            ("../secret.txt", "`..`"),
            ("models/../../secret.txt", "`..`"),
            ("/etc/passwd", "outside the project"),
            ("~/.ssh/id_rsa", "outside the project"),
            ("escape/secret.txt", "symbolic link"),
            ("escape", "symbolic link"),
            ("escape/new_file.sql", "symbolic link"),
            ("models/leak.sql", "symbolic link"),
            ("models/dangling.sql", "broken symbolic link"),
            (".git/config", ".git is off limits"),
        ];
        for (path, why) in refused {
            let err = sb.resolve(path).expect_err(path);
            assert!(err.contains(why), "{path}: {err}");
            assert!(sb.read(path, None, None).is_err(), "{path} was read");
            assert!(sb.write(path, "x").is_err(), "{path} was written");
        }
        assert!(!_outside.path().join("new_file.sql").exists());
        assert_eq!(
            std::fs::read_to_string(_outside.path().join("secret.txt")).unwrap(),
            "password=hunter22"
        );
        for ok in [
            "models/marts/orders.sql",
            "./models/schema.yml",
            "models/alias.yml",
            "models/new/x.sql",
            ".",
        ] {
            assert!(sb.resolve(ok).is_ok(), "{ok} refused: {:?}", sb.resolve(ok));
        }
    }

    #[test]
    fn reading_shows_the_requested_lines_and_lists_directories() {
        let (_tmp, _o, sb) = project();
        let all = sb.read("models/marts/orders.sql", None, None).unwrap();
        assert!(
            all.starts_with("models/marts/orders.sql (4 lines)\n"),
            "{all}"
        );
        let some = sb
            .read("models/marts/orders.sql", Some(2), Some(2))
            .unwrap();
        assert!(
            some.contains("lines 2-2 of 4") && some.contains("stg_order"),
            "{some}"
        );
        let dir = sb.read("models", None, None).unwrap();
        assert!(
            dir.contains("marts/") && dir.contains("schema.yml"),
            "{dir}"
        );
        assert!(!sb.read(".", None, None).unwrap().contains(".git"));
    }

    #[test]
    fn patches_must_match_exactly_once() {
        let (_tmp, _o, sb) = project();
        let file = "models/marts/orders.sql";
        assert!(sb
            .patch(file, "ref('nope')", "x")
            .unwrap_err()
            .contains("does not occur"));
        assert!(sb
            .patch(file, "orders", "x")
            .unwrap_err()
            .contains("occurs 2 times"));
        assert_eq!(
            sb.patch(file, "ref('stg_order')", "ref('stg_orders')")
                .unwrap(),
            file
        );
        assert!(sb
            .read(file, None, None)
            .unwrap()
            .contains("ref('stg_orders')"));
    }

    #[test]
    fn search_skips_git_build_output_and_links() {
        let (_tmp, _o, sb) = project();
        let hits = sb.grep(r"stg_\w+", None, None).unwrap();
        assert_eq!(
            hits,
            "models/marts/orders.sql:2:     select * from {{ ref('stg_order') }}"
        );
        assert!(sb
            .grep("version", None, Some("*.sql"))
            .unwrap()
            .starts_with("no matches"));
        assert!(sb
            .grep("version", Some("models"), Some("*.yml"))
            .unwrap()
            .contains("models/schema.yml:1"));
        assert!(sb
            .grep("password", None, None)
            .unwrap()
            .starts_with("no matches"));
        assert!(sb
            .grep("(", None, None)
            .unwrap_err()
            .contains("invalid regular expression"));
        assert!(sb.grep("x", Some("../"), None).is_err());
        let found = sb.find("ORDERS").unwrap();
        assert_eq!(found, "models/marts/orders.sql");
        let found = sb.find("models/**/*.{sql,yml}").unwrap();
        assert_eq!(found, "models/marts/orders.sql\nmodels/schema.yml");
        assert_eq!(
            sb.find("marts").unwrap(),
            "models/marts/\nmodels/marts/orders.sql"
        );
    }
}
