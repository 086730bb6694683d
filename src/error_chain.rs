//! One line for an error and its causes, for logs, `kedge status` and the
//! CLI. Many errors show their cause in their own message too, so each
//! cause is written once.

/// An error and its causes on one line, each cause once.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(err) = current {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading config file /etc/kedge/kedge.toml: {source}")]
    struct Read {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let err = Read {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "No such file"),
        };
        assert_eq!(
            describe(&err),
            "reading config file /etc/kedge/kedge.toml: No such file"
        );
    }
}
