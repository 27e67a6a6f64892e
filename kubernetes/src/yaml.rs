//! Multi-document YAML from JSON values, for people to read and for `kubectl apply -f`. Block
//! style for maps and lists; every string value double-quoted with JSON's escapes (a YAML
//! double-quoted scalar reads them the same), so no value is ever taken for another type
//! (`"on"`, `"0755"`, `"null"`) and no character can break out of its line. Keys are plain
//! when they are simple names that no YAML reader takes for anything else, quoted otherwise.

use serde_json::Value;

/// The objects as YAML documents, each starting with `---`.
pub fn documents(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        block(&mut out, object, 0);
    }
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => quoted(s),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

/// `s` double-quoted: JSON's escapes, and `\u` escapes as well for what JSON leaves as it is but
/// a YAML reader refuses or reads as a line break (DEL, the C1 controls, U+2028, U+2029, a
/// byte-order mark).
fn quoted(s: &str) -> String {
    let json = serde_json::to_string(s).expect("a string serializes");
    json.chars()
        .map(|c| match c {
            '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' => format!("\\u{:04x}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

fn key(name: &str) -> String {
    let simple = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
    // YAML 1.1 (which Kubernetes' reader follows) reads these as booleans or null.
    let ambiguous = ["y", "yes", "n", "no", "true", "false", "on", "off", "null"]
        .iter()
        .any(|word| word.eq_ignore_ascii_case(name));
    if simple && !ambiguous {
        name.to_owned()
    } else {
        scalar(&Value::String(name.to_owned()))
    }
}

fn nested(value: &Value) -> bool {
    match value {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => false,
    }
}

/// `value` (a map or a list) at `indent` spaces.
fn block(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (name, v) in map {
                let key = key(name);
                if nested(v) {
                    out.push_str(&format!("{pad}{key}:\n"));
                    // A list under a key is indented like the key's map entries.
                    block(out, v, indent + 2);
                } else {
                    out.push_str(&format!("{pad}{key}: {}\n", scalar(v)));
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                if nested(item) {
                    // The first line of the item follows the dash; the rest align with it.
                    let mut inner = String::new();
                    block(&mut inner, item, indent + 2);
                    let first = inner.get(indent + 2..).unwrap_or_default();
                    out.push_str(&format!("{pad}- {first}"));
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(item)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_lists_and_awkward_strings() {
        let doc = json!({
            "kind": "ConfigMap",
            "data": {"on": "yes", "mode": "0755", "line": "a\nb: c # d", "empty": ""},
            "list": [1, {"name": "x", "args": ["--a", "-"]}, [], {}],
            "none": null,
            "flag": true,
        });
        let text = documents(&[doc.clone(), json!({"b": []})]);
        let expected = r#"---
data:
  empty: ""
  line: "a\nb: c # d"
  mode: "0755"
  "on": "yes"
flag: true
kind: "ConfigMap"
list:
  - 1
  - args:
      - "--a"
      - "-"
    name: "x"
  - []
  - {}
none: null
---
b: []
"#;
        assert_eq!(text, expected);
        assert_eq!(key("app.kubernetes.io/name"), "app.kubernetes.io/name");
        // What YAML readers refuse or fold, escaped; the rest as JSON escapes it.
        assert_eq!(
            quoted("a\u{7f}b\u{85}c\u{2028}d\u{feff}e\u{1}f\"\\é"),
            r#""a\u007fb\u0085c\u2028d\ufeffe\u0001f\"\\é""#
        );
        for quoted in ["On", "NO", "y", "", "-x", "a b", "a:b", "1st"] {
            assert!(key(quoted).starts_with('"'), "{quoted}");
        }
    }
}
