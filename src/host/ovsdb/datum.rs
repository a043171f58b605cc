//! OVSDB's JSON encodings of values (RFC 7047 §5.1): atoms, `["set", [...]]`, `["map", [...]]`,
//! `["uuid", "..."]` and `["named-uuid", "..."]`. A set of one element may be sent as the bare
//! atom, and servers do so; the decoders here accept both forms.

use serde_json::{Value, json};

pub fn uuid(u: &str) -> Value {
    json!(["uuid", u])
}

pub fn named_uuid(name: &str) -> Value {
    json!(["named-uuid", name])
}

pub fn set(items: impl IntoIterator<Item = Value>) -> Value {
    json!(["set", items.into_iter().collect::<Vec<_>>()])
}

pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let pairs: Vec<Value> = pairs.into_iter().map(|(k, v)| json!([k, v])).collect();
    json!(["map", pairs])
}

/// The elements of a set column (or of a bare atom standing for a one-element set).
pub fn set_items(v: &Value) -> Vec<&Value> {
    match v.as_array() {
        Some(a) if a.len() == 2 && a[0] == "set" => a[1]
            .as_array()
            .map(|x| x.iter().collect())
            .unwrap_or_default(),
        _ => vec![v],
    }
}

/// The `["uuid", X]` atom's X.
pub fn as_uuid(v: &Value) -> Option<&str> {
    match v.as_array() {
        Some(a) if a.len() == 2 && a[0] == "uuid" => a[1].as_str(),
        _ => None,
    }
}

/// The UUIDs of a set-of-uuid column.
pub fn uuids(v: &Value) -> Vec<&str> {
    set_items(v).into_iter().filter_map(as_uuid).collect()
}

/// An optional integer column (a set of at most one): `["set", []]` is `None`.
pub fn opt_int(v: &Value) -> Option<i64> {
    set_items(v).into_iter().find_map(Value::as_i64)
}

/// An optional string column.
pub fn opt_str(v: &Value) -> Option<&str> {
    set_items(v).into_iter().find_map(Value::as_str)
}

/// Integers of a set column.
pub fn ints(v: &Value) -> Vec<i64> {
    set_items(v).into_iter().filter_map(Value::as_i64).collect()
}

/// The first value under `key` in a map column keyed by strings that `read` accepts.
fn map_find<'a, T>(v: &'a Value, key: &str, read: impl Fn(&'a Value) -> Option<T>) -> Option<T> {
    let a = v.as_array()?;
    if a.len() != 2 || a[0] != "map" {
        return None;
    }
    a[1].as_array()?.iter().find_map(|pair| {
        let p = pair.as_array()?;
        (p.len() == 2 && p[0] == key).then(|| read(&p[1])).flatten()
    })
}

/// The value under `key` in a string-to-string map column.
pub fn map_get<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    map_find(v, key, Value::as_str)
}

/// The value under `key` in a string-to-integer map column (`Mirror.statistics`).
pub fn map_int(v: &Value, key: &str) -> Option<i64> {
    map_find(v, key, Value::as_i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders() {
        assert_eq!(uuid("x"), json!(["uuid", "x"]));
        assert_eq!(named_uuid("p0"), json!(["named-uuid", "p0"]));
        assert_eq!(set([json!(1), json!(2)]), json!(["set", [1, 2]]));
        assert_eq!(map([("owner", "me")]), json!(["map", [["owner", "me"]]]));
    }

    #[test]
    fn decoders_accept_both_set_forms() {
        assert_eq!(opt_int(&json!(10)), Some(10));
        assert_eq!(opt_int(&json!(["set", []])), None);
        assert_eq!(ints(&json!(["set", [20, 30]])), vec![20, 30]);
        assert_eq!(ints(&json!(20)), vec![20]);
        assert_eq!(opt_str(&json!("access")), Some("access"));
        assert_eq!(opt_str(&json!(["set", []])), None);
        assert_eq!(uuids(&json!(["uuid", "a"])), vec!["a"]);
        assert_eq!(
            uuids(&json!(["set", [["uuid", "a"], ["uuid", "b"]]])),
            vec!["a", "b"]
        );
        assert_eq!(uuids(&json!(["set", []])), Vec::<&str>::new());
    }

    #[test]
    fn map_lookup() {
        let m = json!(["map", [["a", "1"], ["owner", "ovs-autoattach"]]]);
        assert_eq!(map_get(&m, "owner"), Some("ovs-autoattach"));
        assert_eq!(map_get(&m, "b"), None);
        assert_eq!(map_get(&json!(["map", []]), "a"), None);
        assert_eq!(map_get(&json!("garbage"), "a"), None);
    }
}
