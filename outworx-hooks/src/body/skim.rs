//! [`skim`]: a few fields read in one pass, for routes whose handler does not parse the body.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The top-level (or nested) field at `path` as a string, read in one pass over the bytes
/// without building the document (strings as they are, numbers and booleans as text): for
/// routes whose handler does not parse the body itself.
pub(crate) fn skim(body: &[u8], paths: [Option<&[&str]>; 2]) -> [Option<String>; 2] {
    let wanted: Vec<_> = paths
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .collect();
    let mut out = [None, None];
    if wanted.is_empty() {
        return out;
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    if let Ok(found) = (Seek { wanted }).deserialize(&mut de) {
        for (i, v) in found {
            out[i] = Some(v);
        }
    }
    out
}

/// Walks the document toward the wanted paths, skipping everything else unbuilt.
struct Seek<'p> {
    wanted: Vec<(usize, &'p [&'p str])>,
}
type Found = Vec<(usize, String)>;

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Found;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Found;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, s: &str) -> Result<Found, E> {
        Ok(self.hits(s.to_owned()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Found, E> {
        Ok(self.hits(n.to_string()))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Found, E> {
        Ok(self.hits(n.to_string()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Found, E> {
        Ok(self.hits(n.to_string()))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Found, E> {
        Ok(self.hits(b.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Found, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Found, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Found, A::Error> {
        let mut found = Vec::new();
        while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            let next: Vec<_> = self
                .wanted
                .iter()
                .filter(|(_, p)| p.first() == Some(&&*key))
                .map(|(i, p)| (*i, &p[1..]))
                .collect();
            if next.is_empty() {
                m.next_value::<IgnoredAny>()?;
            } else {
                found.extend(m.next_value_seed(Seek { wanted: next })?);
            }
        }
        Ok(found)
    }
}

impl Seek<'_> {
    fn hits(&self, value: String) -> Found {
        self.wanted
            .iter()
            .filter(|(_, p)| p.is_empty())
            .map(|(i, _)| (*i, value.clone()))
            .collect()
    }
}
