//! Per-glob overrides of the headers a file is stored and served with: `--cache-control
//! 'GLOB=VALUE'` and `--content-type 'GLOB=VALUE'` (or the same keys in `deskew.toml`). The first
//! rule whose glob matches a path wins; a path no rule matches gets its class's cache-control and
//! its extension's content type. The values land in the manifest and the release record, and S3
//! objects carry them as their `Cache-Control` and `Content-Type`.

use globset::{Glob, GlobMatcher};

/// A rule that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HeaderRuleError {
    /// Not `GLOB=VALUE`.
    #[error("`{rule}` is not GLOB=VALUE (for example `assets/*.wasm=public, max-age=600`)")]
    Shape {
        /// The rule as given.
        rule: String,
    },
    /// The glob does not parse.
    #[error("invalid glob in `{rule}`")]
    Glob {
        /// The rule as given.
        rule: String,
        /// Why.
        #[source]
        source: globset::Error,
    },
    /// The value cannot be a header value.
    #[error("`{rule}`: a header value must be printable ASCII without line breaks")]
    Value {
        /// The rule as given.
        rule: String,
    },
}

/// The overrides, in the order given.
#[derive(Clone, Debug, Default)]
pub struct HeaderRules {
    cache_control: Vec<(GlobMatcher, String)>,
    content_type: Vec<(GlobMatcher, String)>,
}

impl HeaderRules {
    /// Parses `GLOB=VALUE` rules.
    pub fn new(cache_control: &[String], content_type: &[String]) -> Result<HeaderRules, HeaderRuleError> {
        Ok(HeaderRules { cache_control: parse(cache_control)?, content_type: parse(content_type)? })
    }

    /// The `Cache-Control` of `path`, if a rule sets it.
    pub fn cache_control(&self, path: &str) -> Option<&str> {
        first(&self.cache_control, path)
    }

    /// The `Content-Type` of `path`, if a rule sets it.
    pub fn content_type(&self, path: &str) -> Option<&str> {
        first(&self.content_type, path)
    }
}

fn first<'a>(rules: &'a [(GlobMatcher, String)], path: &str) -> Option<&'a str> {
    rules.iter().find(|(g, _)| g.is_match(path)).map(|(_, v)| v.as_str())
}

fn parse(rules: &[String]) -> Result<Vec<(GlobMatcher, String)>, HeaderRuleError> {
    rules
        .iter()
        .map(|rule| {
            let (glob, value) = rule.split_once('=').ok_or_else(|| HeaderRuleError::Shape { rule: rule.clone() })?;
            let (glob, value) = (glob.trim(), value.trim());
            if glob.is_empty() || value.is_empty() {
                return Err(HeaderRuleError::Shape { rule: rule.clone() });
            }
            if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                return Err(HeaderRuleError::Value { rule: rule.clone() });
            }
            let glob = Glob::new(glob).map_err(|source| HeaderRuleError::Glob { rule: rule.clone(), source })?;
            Ok((glob.compile_matcher(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_wins() {
        let rules =
            HeaderRules::new(&["assets/*.wasm=public, max-age=600".into(), "*.wasm=no-store".into()], &["*.webmanifest=application/manifest+json".into()])
                .unwrap();
        assert_eq!(rules.cache_control("assets/add-DkMAU0Nf.wasm"), Some("public, max-age=600"));
        assert_eq!(rules.cache_control("lib/x.wasm"), Some("no-store"));
        assert_eq!(rules.cache_control("index.html"), None);
        assert_eq!(rules.content_type("site.webmanifest"), Some("application/manifest+json"));
    }

    #[test]
    fn bad_rules_name_themselves() {
        for bad in ["*.wasm", "=x", "*.wasm=", "[=x", "*.js=a\nb"] {
            let err = HeaderRules::new(&[bad.into()], &[]).unwrap_err();
            assert!(err.to_string().contains(bad.split('\n').next().unwrap()), "{err}");
        }
    }
}
