//! The variables of a substitution, in Flux's order: each `substitute_from`
//! entry in turn (ConfigMap or Secret `data`, or a file of `KEY=value`
//! lines), later ones overriding earlier ones, then the inline
//! `substitute`. Newlines in values are dropped, as Flux does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;

use crate::config::{is_variable_name, PostBuild, SubstituteFrom, VarsKind};

/// Why the variables could not be loaded. Never holds a value.
#[derive(Debug, thiserror::Error)]
pub enum VarsError {
    #[error("substitute_from {kind}/{namespace}/{name}: {message}")]
    Object {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    #[error("substitute_from file {file}: {message}")]
    File { file: String, message: String },
    #[error("variable name {name:?} from {origin} is invalid: it must match ^[_[:alpha:]][_[:alpha:][:digit:]]*$")]
    InvalidName { name: String, origin: String },
}

/// Reads every source of variables of `post_build`.
pub async fn load_variables(
    client: &kube::Client,
    post_build: &PostBuild,
) -> Result<BTreeMap<String, String>, VarsError> {
    let mut vars = BTreeMap::new();
    for source in &post_build.substitute_from {
        let (origin, loaded) = match source {
            SubstituteFrom::Object {
                kind,
                namespace,
                name,
                optional,
            } => {
                let loaded = object_data(client, *kind, namespace, name).await;
                let failed = |message: String| VarsError::Object {
                    kind: kind.as_str(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    message,
                };
                let origin = format!("{}/{namespace}/{name}", kind.as_str());
                match loaded {
                    Ok(Some(data)) => (origin, data.into_iter().collect::<Vec<_>>()),
                    Ok(None) if *optional => continue,
                    Ok(None) => {
                        return Err(failed("not found (set optional = true to skip it)".into()))
                    }
                    Err(err) => return Err(failed(err.to_string())),
                }
            }
            SubstituteFrom::File { path, optional } => {
                let failed = |message: String| VarsError::File {
                    file: path.display().to_string(),
                    message,
                };
                match std::fs::read_to_string(path) {
                    Ok(text) => (
                        path.display().to_string(),
                        parse_dotenv(&text).map_err(failed)?,
                    ),
                    Err(err) if *optional && err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(failed(err.to_string())),
                }
            }
        };
        for (name, value) in loaded {
            if !is_variable_name(&name) {
                return Err(VarsError::InvalidName { name, origin });
            }
            vars.insert(name, value.replace('\n', ""));
        }
    }
    vars.extend(post_build.substitute.clone());
    Ok(vars)
}

/// The `data` of a ConfigMap, or the decoded `data` of a Secret; `None`
/// when it does not exist.
async fn object_data(
    client: &kube::Client,
    kind: VarsKind,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
    Ok(match kind {
        VarsKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(|cm| cm.data.unwrap_or_default()),
        VarsKind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(|secret| {
                secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect()
            }),
    })
}

/// `KEY=value` lines; blank lines and `#` comments skipped, `export `
/// allowed, one pair of surrounding quotes removed.
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {} is not KEY=value", index + 1))?;
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        pairs.push((key.trim().to_string(), unquoted.to_string()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::parse_dotenv;

    #[test]
    fn dotenv_lines() {
        let pairs = parse_dotenv("# vars\nregion=eu\nexport cluster_name=\"edge-1\"\n\nempty=\n")
            .expect("parse");
        assert_eq!(
            pairs,
            vec![
                ("region".into(), "eu".into()),
                ("cluster_name".into(), "edge-1".into()),
                ("empty".into(), String::new())
            ]
        );
        assert!(parse_dotenv("novalue").is_err());
    }
}
