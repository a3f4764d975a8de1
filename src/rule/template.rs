//! `${name}` templates of actions (target topic, key, headers), resolved against a rule's
//! output fields.

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// `${name}`: an output field.
    Field(String),
}

/// A compiled template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The text as written.
    pub source: String,
    /// The pieces.
    pub parts: Vec<Part>,
    /// The rendered text when the template has no `${field}`, shared by every record it
    /// renders (an action's fixed topic: no allocation per record).
    pub fixed: Option<std::sync::Arc<str>>,
}

impl Template {
    /// Parses `alerts-${productKey}`. `$$` is a literal `$`. Errors give the byte offset.
    pub fn parse(text: &str) -> Result<Template, (usize, String)> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                lit.push('$');
                offset += i + 2;
                rest = stripped;
                continue;
            }
            if !after.starts_with('{') {
                return Err((offset + i, format!("`$` must start `${{name}}` (write `$$` for a literal `$`) in template `{text}`")));
            }
            let close = after.find('}').ok_or_else(|| (offset + i, format!("unclosed `${{` in template `{text}`")))?;
            let name = after[1..close].trim();
            if name.is_empty() {
                return Err((offset + i, format!("empty `${{}}` in template `{text}`")));
            }
            if !lit.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut lit)));
            }
            parts.push(Part::Field(name.to_string()));
            offset += i + 1 + close + 1;
            rest = &after[close + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        let fixed = match parts.as_slice() {
            [] => Some(std::sync::Arc::from("")),
            [Part::Text(t)] => Some(std::sync::Arc::from(t.as_str())),
            _ => None,
        };
        Ok(Template { source: text.to_string(), parts, fixed })
    }

    /// The field names used.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Renders with a resolver; the resolver's error (e.g. a NULL field) is returned as is.
    pub fn render(&self, mut resolve: impl FnMut(&str) -> Result<String, String>) -> Result<String, String> {
        match self.parts.as_slice() {
            [Part::Text(t)] => return Ok(t.clone()),
            [Part::Field(f)] => return resolve(f),
            _ => {}
        }
        let mut out = String::with_capacity(self.source.len() + 16);
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(&resolve(f)?),
            }
        }
        Ok(out)
    }
}

/// Whether `name` is a legal Kafka topic name (`[A-Za-z0-9._-]`, 1 to 249 characters).
pub fn valid_kafka_topic(name: &str) -> bool {
    !name.is_empty() && name.len() <= 249 && name != "." && name != ".." && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("alerts-${productKey}.${ dn }$$").unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), vec!["productKey", "dn"]);
        let r = t.render(|f| Ok(if f == "productKey" { "pk1".into() } else { "d".into() })).unwrap();
        assert_eq!(r, "alerts-pk1.d$");
        assert_eq!(t.fixed, None);
        assert_eq!(Template::parse("out-$$1").unwrap().fixed.as_deref(), Some("out-$1"), "no field: rendered once");
        assert_eq!(Template::parse("").unwrap().fixed.as_deref(), Some(""));
    }

    #[test]
    fn reports_errors_with_offsets() {
        assert_eq!(Template::parse("a-${x").unwrap_err().0, 2);
        assert_eq!(Template::parse("ab$x").unwrap_err().0, 2);
        assert!(Template::parse("${}").is_err());
    }

    #[test]
    fn kafka_topic_names() {
        assert!(valid_kafka_topic("alerts-pk1.x_y"));
        assert!(!valid_kafka_topic("a/b"));
        assert!(!valid_kafka_topic(""));
        assert!(!valid_kafka_topic(".."));
    }
}
