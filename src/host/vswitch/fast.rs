//! The full read, decoded straight from the reply's bytes into the few values it is made of:
//! building a generic JSON tree of thousands of rows first costs more than everything else the
//! run does with them. Only the shapes ovsdb-server sends are accepted; anything else makes
//! [`observed`] return `None`, and the generic decoder handles it, errors included.

use std::borrow::Cow;
use std::fmt;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};

use crate::decide::observed::{OWNER_KEY, OWNER_VALUE, Observed, PortState};
use crate::decide::vlan::{Vlan, VlanMode};

/// What [`super::Vswitch::observe_all`] makes of its reply, computed as the generic decoder
/// does; `None` when the reply is not in the usual shape, or reports an error.
pub fn observed(reply: &[u8]) -> Option<Observed> {
    let Reply {
        result: (bridges, ports, mirrors),
    } = serde_json::from_slice(reply).ok()?;
    if bridges.error.is_some() || ports.error.is_some() || mirrors.error.is_some() {
        return None;
    }
    let mut owner_of: BTreeMap<&str, &str> = BTreeMap::new();
    for b in &bridges.rows {
        let name = b.name.as_str().unwrap_or_default();
        for p in b.ports.uuids() {
            owner_of.insert(p, name);
        }
    }
    // Mirrors are few: their rows are decoded as the generic decoder does, by the same code.
    let mut holder: BTreeMap<&str, &str> = BTreeMap::new();
    for b in &bridges.rows {
        for m in b.mirrors.uuids() {
            holder.insert(m, b.name.as_str().unwrap_or_default());
        }
    }
    let mut observed = Observed {
        bridges: bridges
            .rows
            .iter()
            .filter_map(|b| Some((b.name.as_str()?.to_string(), b._uuid.as_uuid()?.to_string())))
            .collect(),
        mirrors: super::mirrors::decode(&mirrors.rows, &holder).ok()?,
        mirror_filter: super::mirrors::has_filter(&mirrors.rows),
        ..Observed::default()
    };
    for p in &ports.rows {
        // A row without a name or uuid is an error, which the generic decoder reports.
        let name = p.name.as_str()?;
        let uuid = p._uuid.as_uuid()?;
        let mut trunks: Vec<u16> = p
            .trunks
            .ints()
            .filter_map(|t| u16::try_from(t).ok())
            .collect();
        trunks.sort_unstable();
        let state = PortState {
            uuid: uuid.to_string(),
            bridge: owner_of.get(uuid).map(|b| b.to_string()),
            vlan: Vlan {
                tag: p.tag.opt_int().and_then(|t| u16::try_from(t).ok()),
                trunks,
                mode: p.vlan_mode.opt_str().and_then(VlanMode::parse),
            },
            owned: p.external_ids.map_get(OWNER_KEY) == Some(OWNER_VALUE),
        };
        observed.ports.insert(name.to_string(), state);
    }
    Some(observed)
}

#[derive(Deserialize)]
pub struct Reply<'a> {
    #[serde(borrow)]
    pub result: (
        Select<Bridge<'a>>,
        Select<Port<'a>>,
        Select<serde_json::Value>,
    ),
}

#[derive(Deserialize)]
pub struct Select<R> {
    pub rows: Vec<R>,
    /// Present only on a failed operation, which the generic decoder reports.
    #[serde(default, deserialize_with = "present")]
    pub error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
pub struct Bridge<'a> {
    #[serde(borrow)]
    pub _uuid: Datum<'a>,
    #[serde(borrow)]
    pub name: Datum<'a>,
    #[serde(borrow)]
    pub ports: Datum<'a>,
    #[serde(borrow)]
    pub mirrors: Datum<'a>,
}

#[derive(Deserialize)]
pub struct Port<'a> {
    #[serde(borrow)]
    pub _uuid: Datum<'a>,
    #[serde(borrow)]
    pub name: Datum<'a>,
    #[serde(borrow)]
    pub tag: Datum<'a>,
    #[serde(borrow)]
    pub trunks: Datum<'a>,
    #[serde(borrow)]
    pub vlan_mode: Datum<'a>,
    #[serde(borrow)]
    pub external_ids: Datum<'a>,
}

/// `Some` for a field that is there at all, `null` included.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IgnoredAny>, D::Error> {
    IgnoredAny::deserialize(d).map(Some)
}

/// An OVSDB atom (RFC 7047 §5.1). `Other` stands for reals and booleans, which no column
/// read here holds but which a set may.
#[derive(Debug, PartialEq)]
pub enum Atom<'a> {
    Int(i64),
    Str(Cow<'a, str>),
    Uuid(Cow<'a, str>),
    Other,
}

/// An OVSDB value: a bare atom (a set of one), a set, or a map.
#[derive(Debug, PartialEq)]
pub enum Datum<'a> {
    Atom(Atom<'a>),
    Set(Vec<Atom<'a>>),
    Map(Vec<(Atom<'a>, Atom<'a>)>),
}

impl<'a> Datum<'a> {
    /// The elements, as `datum::set_items` sees them.
    pub fn items(&self) -> &[Atom<'a>] {
        match self {
            Datum::Atom(a) => std::slice::from_ref(a),
            Datum::Set(items) => items,
            Datum::Map(_) => &[],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Datum::Atom(Atom::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn as_uuid(&self) -> Option<&str> {
        match self {
            Datum::Atom(Atom::Uuid(u)) => Some(u),
            _ => None,
        }
    }

    pub fn opt_int(&self) -> Option<i64> {
        self.items().iter().find_map(|a| match a {
            Atom::Int(i) => Some(*i),
            _ => None,
        })
    }

    pub fn ints(&self) -> impl Iterator<Item = i64> + '_ {
        self.items().iter().filter_map(|a| match a {
            Atom::Int(i) => Some(*i),
            _ => None,
        })
    }

    pub fn opt_str(&self) -> Option<&str> {
        self.items().iter().find_map(|a| match a {
            Atom::Str(s) => Some(s.as_ref()),
            _ => None,
        })
    }

    pub fn uuids(&self) -> impl Iterator<Item = &str> + '_ {
        self.items().iter().filter_map(|a| match a {
            Atom::Uuid(u) => Some(u.as_ref()),
            _ => None,
        })
    }

    /// The first string value under `key` in a map, as `datum::map_get`.
    pub fn map_get(&self, key: &str) -> Option<&str> {
        match self {
            Datum::Map(pairs) => pairs.iter().find_map(|(k, v)| match (k, v) {
                (Atom::Str(k), Atom::Str(v)) if k == key => Some(v.as_ref()),
                _ => None,
            }),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Atom<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AtomVisitor)
    }
}

struct AtomVisitor;

impl<'de> Visitor<'de> for AtomVisitor {
    type Value = Atom<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OVSDB atom")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Atom::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Atom::Other, Atom::Int))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Atom::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Atom::Other)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Atom::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Atom::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let tag: &'de str = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("empty array"))?;
        if tag != "uuid" {
            return Err(de::Error::custom("not a uuid"));
        }
        let Some(Atom::Str(uuid)) = seq.next_element()? else {
            return Err(de::Error::custom("not a uuid"));
        };
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("not a uuid"));
        }
        Ok(Atom::Uuid(uuid))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Datum<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DatumVisitor)
    }
}

struct DatumVisitor;

impl<'de> Visitor<'de> for DatumVisitor {
    type Value = Datum<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OVSDB value")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        AtomVisitor.visit_i64(v).map(Datum::Atom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        AtomVisitor.visit_u64(v).map(Datum::Atom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        AtomVisitor.visit_f64(v).map(Datum::Atom)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        AtomVisitor.visit_bool(v).map(Datum::Atom)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        AtomVisitor.visit_borrowed_str(v).map(Datum::Atom)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        AtomVisitor.visit_str(v).map(Datum::Atom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let tag: &'de str = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("empty array"))?;
        let datum = match tag {
            "uuid" => match seq.next_element()? {
                Some(Atom::Str(u)) => Datum::Atom(Atom::Uuid(u)),
                _ => return Err(de::Error::custom("not a uuid")),
            },
            "set" => Datum::Set(
                seq.next_element()?
                    .ok_or_else(|| de::Error::custom("set without elements"))?,
            ),
            "map" => Datum::Map(
                seq.next_element()?
                    .ok_or_else(|| de::Error::custom("map without pairs"))?,
            ),
            _ => return Err(de::Error::custom("not an OVSDB value")),
        };
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("trailing element"));
        }
        Ok(datum)
    }
}
