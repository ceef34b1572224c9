//! What a dbt project and its profile say about where dbt builds. Pure: the
//! caller reads the files; this module only parses their text.
//!
//! dbt renders `profiles.yml` with Jinja. selfheal renders the one form that
//! decides where a build lands, `{{ env_var('NAME') }}` and
//! `{{ env_var('NAME', 'default') }}`, and treats anything else it cannot
//! render as unknown, never as a guess: an unknown production is a
//! production that must not be touched.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The parts of `dbt_project.yml` that say where dbt writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSettings {
    /// The profile the project runs with (`profile:`).
    pub profile: String,
    /// Build output (`target-path`, default `target`).
    pub target_path: String,
    /// dbt's logs (`log-path`, default `logs`).
    pub log_path: String,
    /// Installed packages (`packages-install-path`, default `dbt_packages`).
    pub packages_path: String,
}

#[derive(Deserialize)]
struct ProjectYml {
    profile: Option<String>,
    #[serde(rename = "target-path")]
    target_path: Option<String>,
    #[serde(rename = "log-path")]
    log_path: Option<String>,
    #[serde(rename = "packages-install-path")]
    packages_path: Option<String>,
}

/// Reads `dbt_project.yml`.
pub fn project_settings(text: &str) -> Result<ProjectSettings, String> {
    let yml: ProjectYml = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    Ok(ProjectSettings {
        profile: yml.profile.ok_or("dbt_project.yml names no `profile`")?,
        target_path: yml.target_path.unwrap_or_else(|| "target".into()),
        log_path: yml.log_path.unwrap_or_else(|| "logs".into()),
        packages_path: yml.packages_path.unwrap_or_else(|| "dbt_packages".into()),
    })
}

/// One profile of `profiles.yml`: its default target and its outputs, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    /// `target:`, rendered; None when it cannot be rendered.
    pub default_target: Option<String>,
    /// Each output's mapping as written (Jinja left for dbt to render).
    pub outputs: BTreeMap<String, Value>,
}

/// Where one output builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warehouse {
    /// A DuckDB database file (`path:` rendered).
    DuckDbFile(String),
    /// A DuckDB database that is not a local file (`:memory:`, `md:…`, an
    /// unrenderable path): nothing selfheal can copy.
    DuckDbElsewhere(String),
    /// Any other adapter (Snowflake, BigQuery, Postgres, …).
    Other(String),
}

/// Reads profile `name` from `profiles.yml`; `env` answers `env_var` lookups.
pub fn profile(
    text: &str,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Profile, String> {
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let entry = doc
        .get(name)
        .ok_or_else(|| format!("profiles.yml has no profile `{name}`"))?;
    let outputs: BTreeMap<String, Value> = entry
        .get("outputs")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("profile `{name}` has no outputs"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let default_target = match entry.get("target") {
        Some(Value::String(t)) => render(t, env),
        // dbt's default when `target:` is missing.
        None => Some("default".into()),
        Some(_) => None,
    };
    Ok(Profile {
        name: name.to_string(),
        default_target,
        outputs,
    })
}

impl Profile {
    /// Where output `target` builds; None when the profile has no such output.
    pub fn warehouse(
        &self,
        target: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Warehouse> {
        let out = self.outputs.get(target)?;
        let adapter = out
            .get("type")
            .and_then(Value::as_str)
            .and_then(|t| render(t, env));
        Some(match adapter.as_deref() {
            Some("duckdb") => {
                let path = match out.get("path") {
                    Some(Value::String(p)) => render(p, env),
                    // dbt-duckdb's default is an in-memory database.
                    None => Some(":memory:".into()),
                    Some(_) => None,
                };
                match path {
                    Some(p) if is_duckdb_file(&p) => Warehouse::DuckDbFile(p),
                    Some(p) => Warehouse::DuckDbElsewhere(p),
                    None => Warehouse::DuckDbElsewhere("an unrenderable path".into()),
                }
            }
            Some(other) => Warehouse::Other(other.to_string()),
            None => Warehouse::Other("an unknown adapter".into()),
        })
    }
}

fn is_duckdb_file(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !(path.is_empty()
        || path == ":memory:"
        || lower.starts_with("md:")
        || lower.starts_with("motherduck:")
        || lower.contains("://"))
}

/// Renders `text` when its only Jinja is `env_var` calls; None otherwise.
pub fn render(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}")? + start;
        out.push_str(&env_var_call(rest[start + 2..end].trim(), env)?);
        rest = &rest[end + 2..];
    }
    if rest.contains("{%") || rest.contains("}}") {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// `env_var('NAME')` or `env_var('NAME', 'default')`, evaluated.
fn env_var_call(expr: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let args = expr
        .strip_prefix("env_var")?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    let mut parts = Vec::new();
    let mut rest = args.trim();
    while !rest.is_empty() {
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let close = rest[1..].find(quote)? + 1;
        parts.push(&rest[1..close]);
        rest = rest[close + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    match parts.as_slice() {
        [name] => env(name),
        [name, default] => env(name).or_else(|| Some(default.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "WAREHOUSE" => Some("/srv/prod.duckdb".into()),
            "DBT_TARGET" => Some("prod".into()),
            _ => None,
        }
    }

    #[test]
    fn env_var_forms_render_and_other_jinja_does_not() {
        let cases: &[(&str, Option<&str>)] = &[
            ("plain.duckdb", Some("plain.duckdb")),
            ("{{ env_var('WAREHOUSE') }}", Some("/srv/prod.duckdb")),
            ("{{env_var(\"WAREHOUSE\")}}", Some("/srv/prod.duckdb")),
            (
                "{{ env_var('MISSING', 'target/dev.duckdb') }}",
                Some("target/dev.duckdb"),
            ),
            (
                "/data/{{ env_var('MISSING', 'x') }}.duckdb",
                Some("/data/x.duckdb"),
            ),
            ("{{ env_var('MISSING') }}", None),
            ("{{ var('x') }}", None),
            ("{% if true %}a{% endif %}", None),
            ("{{ env_var('A', 'b', 'c') }}", None),
        ];
        for (text, want) in cases {
            assert_eq!(render(text, &env).as_deref(), *want, "{text}");
        }
    }

    #[test]
    fn project_settings_take_dbts_defaults() {
        let p = project_settings("name: shop\nprofile: shop\nversion: '1'\n").unwrap();
        assert_eq!(
            (
                p.profile.as_str(),
                p.target_path.as_str(),
                p.log_path.as_str(),
                p.packages_path.as_str()
            ),
            ("shop", "target", "logs", "dbt_packages")
        );
        let p =
            project_settings("profile: shop\ntarget-path: build\npackages-install-path: pkgs\n")
                .unwrap();
        assert_eq!(
            (p.target_path.as_str(), p.packages_path.as_str()),
            ("build", "pkgs")
        );
        assert!(project_settings("name: shop\n")
            .unwrap_err()
            .contains("profile"));
    }

    const PROFILES: &str = r#"
config:
  send_anonymous_usage_stats: false
shop:
  target: "{{ env_var('DBT_TARGET', 'dev') }}"
  outputs:
    prod:
      type: duckdb
      path: "{{ env_var('WAREHOUSE') }}"
    dev:
      type: duckdb
      path: dev.duckdb
    mem:
      type: duckdb
    cloud:
      type: duckdb
      path: "md:analytics"
    snow:
      type: snowflake
      account: xy123
"#;

    #[test]
    fn each_output_says_where_it_builds() {
        let p = profile(PROFILES, "shop", &env).unwrap();
        assert_eq!(p.default_target.as_deref(), Some("prod"));
        let cases: &[(&str, Option<Warehouse>)] = &[
            (
                "prod",
                Some(Warehouse::DuckDbFile("/srv/prod.duckdb".into())),
            ),
            ("dev", Some(Warehouse::DuckDbFile("dev.duckdb".into()))),
            ("mem", Some(Warehouse::DuckDbElsewhere(":memory:".into()))),
            (
                "cloud",
                Some(Warehouse::DuckDbElsewhere("md:analytics".into())),
            ),
            ("snow", Some(Warehouse::Other("snowflake".into()))),
            ("nope", None),
        ];
        for (target, want) in cases {
            assert_eq!(&p.warehouse(target, &env), want, "{target}");
        }
    }

    #[test]
    fn a_missing_profile_is_named() {
        assert!(profile(PROFILES, "other", &env)
            .unwrap_err()
            .contains("`other`"));
        let no_target = profile(
            "p:\n  outputs:\n    default:\n      type: duckdb\n",
            "p",
            &env,
        )
        .unwrap();
        assert_eq!(no_target.default_target.as_deref(), Some("default"));
    }
}
