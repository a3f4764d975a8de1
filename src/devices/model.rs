//! Product thing models: one TOML file per product (format in `models/README.md`), and the
//! check of an integration value against a modelled type.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::doc::Node;

/// A modelled data type.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RawType")]
pub enum DataType {
    /// A 64-bit integer (a JSON integer, or a string holding one).
    Int,
    /// A number (a JSON number, or a string holding one, as seed 003's `"1.02"`).
    Float,
    /// Same as `float`.
    Double,
    /// A JSON string.
    String,
    /// `true`/`false`, or the integers 0 and 1.
    Bool,
    /// One of the listed values (strings or integers).
    Enum {
        /// The allowed values.
        values: Vec<EnumValue>,
    },
    /// Epoch milliseconds (integer), or an RFC 3339 / `yyyy-MM-dd HH:mm:ss[.SSS]` string.
    Date,
    /// An object with typed members; every member is optional, unknown members are errors.
    Struct {
        /// The members.
        members: BTreeMap<String, DataType>,
    },
    /// An array whose elements all have the `item` type.
    Array {
        /// The element type.
        item: Box<DataType>,
    },
    /// A file reference: a non-empty string (`local://name` in HTTP uploads, or a URL).
    File,
}

/// A type as written: `{ type = "…", values | members | item = … }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    values: Option<Vec<EnumValue>>,
    #[serde(default)]
    members: Option<BTreeMap<String, DataType>>,
    #[serde(default)]
    item: Option<Box<DataType>>,
}

impl TryFrom<RawType> for DataType {
    type Error = String;

    fn try_from(r: RawType) -> Result<DataType, String> {
        let extra = [("values", r.values.is_some() && r.kind != "enum"), ("members", r.members.is_some() && r.kind != "struct"), ("item", r.item.is_some() && r.kind != "array")];
        if let Some((key, _)) = extra.iter().find(|(_, bad)| *bad) {
            return Err(format!("`{key}` does not apply to type `{}`", r.kind));
        }
        let t = match r.kind.as_str() {
            "int" => DataType::Int,
            "float" => DataType::Float,
            "double" => DataType::Double,
            "string" => DataType::String,
            "bool" => DataType::Bool,
            "date" => DataType::Date,
            "file" => DataType::File,
            "enum" => DataType::Enum { values: r.values.ok_or("an enum needs `values`")? },
            "struct" => DataType::Struct { members: r.members.ok_or("a struct needs `members`")? },
            "array" => DataType::Array { item: r.item.ok_or("an array needs `item`")? },
            other => return Err(format!("unknown type `{other}` (int, float, double, string, bool, enum, date, struct, array, file)")),
        };
        Ok(t)
    }
}

/// An allowed value of an `enum` type.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum EnumValue {
    /// An integer value.
    Int(i64),
    /// A string value.
    Str(String),
}

/// A product's thing model.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThingModel {
    /// The product key (defaults to the file stem).
    #[serde(default)]
    pub product_key: String,
    /// A display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Measure points (`measurepoints` of `integration/measurepoint/post`).
    #[serde(default)]
    pub measurepoints: BTreeMap<String, DataType>,
    /// Attributes (`attributes` of `integration/attributes/post`).
    #[serde(default)]
    pub attributes: BTreeMap<String, DataType>,
    /// Events (`events` of `integration/event/post`); usually structs.
    #[serde(default)]
    pub events: BTreeMap<String, DataType>,
}

impl ThingModel {
    /// Parses a model file's text; `stem` is the product key when the file does not set one.
    pub fn parse(stem: &str, text: &str) -> Result<ThingModel, String> {
        let mut m: ThingModel = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        if m.product_key.is_empty() {
            m.product_key = stem.to_string();
        }
        for (section, map) in [("measurepoints", &m.measurepoints), ("attributes", &m.attributes), ("events", &m.events)] {
            for (id, t) in map {
                t.check_definition().map_err(|e| format!("{section}.{id}: {e}"))?;
            }
        }
        Ok(m)
    }

    /// Reads a model file.
    pub fn load(path: &Path) -> Result<ThingModel, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        ThingModel::parse(stem, &text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl DataType {
    /// The type's name in messages.
    pub fn name(&self) -> String {
        match self {
            DataType::Int => "int".into(),
            DataType::Float => "float".into(),
            DataType::Double => "double".into(),
            DataType::String => "string".into(),
            DataType::Bool => "bool".into(),
            DataType::Enum { .. } => "enum".into(),
            DataType::Date => "date".into(),
            DataType::Struct { .. } => "struct".into(),
            DataType::Array { item } => format!("array of {}", item.name()),
            DataType::File => "file".into(),
        }
    }

    fn check_definition(&self) -> Result<(), String> {
        match self {
            DataType::Enum { values } if values.is_empty() => Err("an enum needs at least one value".into()),
            DataType::Struct { members } => {
                for (k, t) in members {
                    t.check_definition().map_err(|e| format!("member `{k}`: {e}"))?;
                }
                Ok(())
            }
            DataType::Array { item } => item.check_definition(),
            _ => Ok(()),
        }
    }

    /// Checks a value against the type. The error says what was expected and what was found,
    /// with the path inside the value (`.member`, `[index]`) when the problem is nested.
    pub fn check(&self, v: &Node<'_>) -> Result<(), String> {
        let mismatch = || Err(format!("expected {}, got {}", self.name(), describe(v)));
        match self {
            DataType::Int => {
                let ok = match v {
                    Node::Int(_) => true,
                    Node::Str(s) => s.trim().parse::<i64>().is_ok(),
                    _ => false,
                };
                if ok {
                    Ok(())
                } else {
                    mismatch()
                }
            }
            DataType::Float | DataType::Double => {
                let ok = match v {
                    Node::Int(_) | Node::UInt(_) | Node::Float(_) => true,
                    Node::Str(s) => s.trim().parse::<f64>().is_ok_and(f64::is_finite),
                    _ => false,
                };
                if ok {
                    Ok(())
                } else {
                    mismatch()
                }
            }
            DataType::String => {
                if matches!(v, Node::Str(_)) {
                    Ok(())
                } else {
                    mismatch()
                }
            }
            DataType::Bool => match v {
                Node::Bool(_) | Node::Int(0 | 1) => Ok(()),
                _ => mismatch(),
            },
            DataType::Enum { values } => {
                let found = values.iter().any(|allowed| match (allowed, v) {
                    (EnumValue::Int(i), Node::Int(n)) => n == i,
                    (EnumValue::Int(i), Node::Str(s)) => s.trim().parse::<i64>().ok() == Some(*i),
                    (EnumValue::Str(a), Node::Str(s)) => a == s,
                    _ => false,
                });
                if found {
                    Ok(())
                } else {
                    let allowed: Vec<String> = values
                        .iter()
                        .map(|a| match a {
                            EnumValue::Int(i) => i.to_string(),
                            EnumValue::Str(s) => format!("\"{s}\""),
                        })
                        .collect();
                    Err(format!("{} is not one of the enum values [{}]", describe(v), allowed.join(", ")))
                }
            }
            DataType::Date => {
                let ok = match v {
                    Node::Int(i) => *i >= 0,
                    Node::Str(s) => parse_date_ms(s).is_some(),
                    _ => false,
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!("expected date (epoch ms, RFC 3339 or yyyy-MM-dd HH:mm:ss), got {}", describe(v)))
                }
            }
            DataType::Struct { members } => {
                let Node::Object(_) = v else {
                    return mismatch();
                };
                for (k, mv) in v.fields() {
                    let Some(t) = members.get(k) else {
                        let known: Vec<&str> = members.keys().map(String::as_str).collect();
                        return Err(format!("unknown struct member `{k}` (members: {})", known.join(", ")));
                    };
                    t.check(mv).map_err(|e| format!(".{k}: {e}"))?;
                }
                Ok(())
            }
            DataType::Array { item } => {
                let Node::Array(items) = v else {
                    return mismatch();
                };
                for (i, e) in items.iter().enumerate() {
                    item.check(e).map_err(|err| format!("[{i}]: {err}"))?;
                }
                Ok(())
            }
            DataType::File => match v {
                Node::Str(s) if !s.trim().is_empty() => Ok(()),
                _ => Err(format!("expected file (a non-empty reference such as local://name), got {}", describe(v))),
            },
        }
    }
}

/// Parses a date string: RFC 3339, or `yyyy-MM-dd HH:mm:ss[.SSS]` (read as UTC), to epoch ms.
pub fn parse_date_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok().map(|t| t.and_utc().timestamp_millis())
}

/// A short description of a JSON value for messages: its type and (shortened) text.
pub fn describe(v: &Node<'_>) -> String {
    let kind = match v {
        Node::Null => return "null".into(),
        Node::Bool(_) => "bool",
        Node::Int(_) | Node::UInt(_) | Node::Float(_) => "number",
        Node::Str(_) => "string",
        Node::Array(_) => "array",
        Node::Object(_) => "object",
    };
    let mut text = v.to_json().to_string();
    if text.len() > 40 {
        let mut cut = 40;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    format!("{kind} {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    impl DataType {
        fn check_json(&self, v: &serde_json::Value) -> Result<(), String> {
            self.check(&Node::from_json(v))
        }
    }

    fn t(src: &str) -> DataType {
        let m = ThingModel::parse("p", &format!("[measurepoints]\nx = {src}\n")).unwrap();
        m.measurepoints["x"].clone()
    }

    #[test]
    fn scalar_types() {
        assert!(t("{ type = \"int\" }").check_json(&json!(9)).is_ok());
        assert!(t("{ type = \"int\" }").check_json(&json!("9")).is_ok());
        assert_eq!(t("{ type = \"int\" }").check_json(&json!(1.5)).unwrap_err(), "expected int, got number 1.5");
        assert!(t("{ type = \"float\" }").check_json(&json!(1)).is_ok());
        assert!(t("{ type = \"float\" }").check_json(&json!("1.02")).is_ok());
        assert_eq!(t("{ type = \"double\" }").check_json(&json!("abc")).unwrap_err(), "expected double, got string \"abc\"");
        assert!(t("{ type = \"string\" }").check_json(&json!(1)).is_err());
        assert!(t("{ type = \"bool\" }").check_json(&json!(true)).is_ok());
        assert!(t("{ type = \"bool\" }").check_json(&json!(1)).is_ok());
        assert!(t("{ type = \"bool\" }").check_json(&json!(2)).is_err());
        assert!(t("{ type = \"file\" }").check_json(&json!("local://filename1")).is_ok());
        assert!(t("{ type = \"file\" }").check_json(&json!("")).is_err());
    }

    #[test]
    fn dates() {
        let d = t("{ type = \"date\" }");
        assert!(d.check_json(&json!(1579580182824_i64)).is_ok());
        assert!(d.check_json(&json!("2018-08-31 15:32:28")).is_ok());
        assert!(d.check_json(&json!("2018-08-31 15:32:28.195")).is_ok());
        assert!(d.check_json(&json!("2018-08-31T07:32:28.195Z")).is_ok());
        assert!(d.check_json(&json!("yesterday")).is_err());
        assert!(d.check_json(&json!(-1)).is_err());
        assert_eq!(parse_date_ms("1970-01-01 00:00:01.5"), Some(1500));
    }

    #[test]
    fn enums() {
        let e = t("{ type = \"enum\", values = [\"on\", \"off\"] }");
        assert!(e.check_json(&json!("on")).is_ok());
        assert_eq!(e.check_json(&json!("dim")).unwrap_err(), "string \"dim\" is not one of the enum values [\"on\", \"off\"]");
        let e = t("{ type = \"enum\", values = [0, 1, 2] }");
        assert!(e.check_json(&json!(2)).is_ok());
        assert!(e.check_json(&json!(3)).is_err());
        assert!(ThingModel::parse("p", "[measurepoints]\nx = { type = \"enum\", values = [] }\n").unwrap_err().contains("at least one value"));
    }

    #[test]
    fn structs_and_arrays() {
        let s = t("{ type = \"struct\", members = { alarm = { type = \"int\" }, level = { type = \"int\" } } }");
        assert!(s.check_json(&json!({"alarm": 9, "level": 3})).is_ok());
        assert!(s.check_json(&json!({"alarm": 9})).is_ok(), "members are optional");
        assert_eq!(s.check_json(&json!({"alarm": "x"})).unwrap_err(), ".alarm: expected int, got string \"x\"");
        assert_eq!(s.check_json(&json!({"other": 1})).unwrap_err(), "unknown struct member `other` (members: alarm, level)");
        assert!(s.check_json(&json!(1)).is_err());
        let a = t("{ type = \"array\", item = { type = \"float\" } }");
        assert!(a.check_json(&json!(["1.02", 2.02, 7])).is_ok());
        assert_eq!(a.check_json(&json!([1.0, "x"])).unwrap_err(), "[1]: expected float, got string \"x\"");
        assert_eq!(a.check_json(&json!(1.0)).unwrap_err(), "expected array of float, got number 1.0");
    }

    #[test]
    fn bad_definitions_are_errors() {
        assert!(ThingModel::parse("p", "[measurepoints]\nx = { type = \"decimal\" }\n").is_err());
        assert!(ThingModel::parse("p", "[measurepoints]\nx = { type = \"int\", bogus = 1 }\n").is_err());
        assert!(ThingModel::parse("p", "[measurepoints]\nx = { type = \"int\", item = { type = \"int\" } }\n").unwrap_err().contains("`item` does not apply to type `int`"));
        assert!(ThingModel::parse("p", "[measurepoints]\nx = { type = \"array\" }\n").unwrap_err().contains("an array needs `item`"));
        assert!(ThingModel::parse("p", "bogus = 1\n").is_err());
        assert_eq!(ThingModel::parse("p", "").unwrap().product_key, "p");
        assert_eq!(ThingModel::parse("p", "product_key = \"q\"").unwrap().product_key, "q");
    }
}
