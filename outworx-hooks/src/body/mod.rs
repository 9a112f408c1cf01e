//! Reading fields out of JSON bodies without building the document: a handler's `Json<T>`
//! parse that picks top-level fields off the same pass ([`parse`]), a one-pass reader of a few
//! fields for routes that do not parse the body ([`skim`]), and [`Scalar`] for the small
//! values verification and handshakes read.
//!
//! None of them builds a `serde_json::Value`: a hostile body (a long array, deep nesting)
//! costs its length in time and little memory, never a tree many times its size.
//!
//! The pipeline needs the provider's event type (and sometimes its natural idempotency key)
//! from the body. When the handler already parses the body as `T`, a second scan of the bytes
//! just for those fields would double the JSON cost of a delivery. Instead `T` is deserialized
//! through a thin wrapper around `serde_json`'s deserializer that watches the top-level
//! object's keys and copies the scalar values of the wanted ones as they go past, whether `T`
//! keeps those fields or skips them.

mod scalar;
mod skim;

pub(crate) use scalar::Scalar;
pub(crate) use skim::skim;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// Up to two wanted top-level fields, by name.
pub(crate) type Wanted<'w> = [Option<&'w str>; 2];
/// What was found for each wanted field.
pub(crate) type Found = [Option<String>; 2];

/// Parses `body` as `T` in one pass, returning the scalar values of the `wanted` top-level
/// fields (strings as they are, numbers and booleans as text) alongside.
pub(crate) fn parse<T: DeserializeOwned>(
    body: &[u8],
    wanted: Wanted<'_>,
) -> Result<(T, Found), serde_json::Error> {
    let mut found = Found::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = T::deserialize(Tap {
        de: &mut de,
        role: Role::Top(wanted),
        found: &mut found,
    })?;
    de.end()?;
    Ok((value, found))
}

/// What a [`Tap`] watches for.
#[derive(Clone, Copy)]
enum Role<'w> {
    /// The document itself: if it is an object, watch its keys.
    Top(Wanted<'w>),
    /// The value of wanted field `i` (or an object key, into slot 0): copy it if it is a
    /// scalar.
    Value(usize),
}

/// A deserializer (or visitor) wrapper that forwards everything and records on the side.
struct Tap<'f, 'w, D> {
    de: D,
    role: Role<'w>,
    found: &'f mut Found,
}

/// The index of the wanted field a [`Role::Key`] saw, carried from key to value.
struct KeyTap<'f, 'w> {
    wanted: Wanted<'w>,
    hit: &'f mut Option<usize>,
}

macro_rules! forward_deserialize {
    ($($method:ident $(($($arg:ident: $ty:ty),*))?,)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($($arg: $ty,)*)? visitor: V) -> Result<V::Value, D::Error> {
            let Tap { de, role, found } = self;
            de.$method($($($arg,)*)? TapVisitor { inner: visitor, role, found })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tap<'_, '_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any, deserialize_bool, deserialize_i8, deserialize_i16, deserialize_i32,
        deserialize_i64, deserialize_i128, deserialize_u8, deserialize_u16, deserialize_u32,
        deserialize_u64, deserialize_u128, deserialize_f32, deserialize_f64, deserialize_char,
        deserialize_str, deserialize_string, deserialize_bytes, deserialize_byte_buf,
        deserialize_option, deserialize_unit, deserialize_seq, deserialize_map,
        deserialize_identifier,
        deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        match self.role {
            // `T` skips a wanted field: it still has to be seen to be copied.
            Role::Value(_) => self.deserialize_any(visitor),
            _ => self.de.deserialize_ignored_any(visitor),
        }
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// The visitor side of a [`Tap`]: records, then hands the same call to `T`'s visitor.
struct TapVisitor<'f, 'w, V> {
    inner: V,
    role: Role<'w>,
    found: &'f mut Found,
}

impl<V> TapVisitor<'_, '_, V> {
    fn record(&mut self, text: impl FnOnce() -> String) {
        if let Role::Value(i) = self.role {
            self.found[i] = Some(text());
        }
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty) $record:expr,)*) => {$(
        fn $method<E: de::Error>(mut self, v: $ty) -> Result<V::Value, E> {
            #[allow(clippy::redundant_closure_call)]
            self.record(|| ($record)(&v));
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for TapVisitor<'_, '_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool) |v: &bool| v.to_string(),
        visit_i64(i64) |v: &i64| v.to_string(),
        visit_i128(i128) |v: &i128| v.to_string(),
        visit_u64(u64) |v: &u64| v.to_string(),
        visit_u128(u128) |v: &u128| v.to_string(),
        visit_f64(f64) |v: &f64| v.to_string(),
        visit_str(&str) |v: &&str| (*v).to_owned(),
        visit_borrowed_str(&'de str) |v: &&str| (*v).to_owned(),
        visit_string(String) |v: &String| v.clone(),
        visit_bytes(&[u8]) |_: &&[u8]| String::new(),
        visit_borrowed_bytes(&'de [u8]) |_: &&[u8]| String::new(),
        visit_byte_buf(Vec<u8>) |_: &Vec<u8>| String::new(),
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.inner.visit_some(Tap {
            de: d,
            role: self.role,
            found: self.found,
        })
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.inner.visit_newtype_struct(d)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        match self.role {
            Role::Top(wanted) => self.inner.visit_map(TapMap {
                map,
                wanted,
                hit: None,
                found: self.found,
            }),
            _ => self.inner.visit_map(map),
        }
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(data)
    }
}

/// The top-level object, handing each key and value to `T` through a [`Tap`].
struct TapMap<'f, 'w, A> {
    map: A,
    wanted: Wanted<'w>,
    hit: Option<usize>,
    found: &'f mut Found,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for TapMap<'_, '_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.hit = None;
        self.map.next_key_seed(KeySeed {
            seed,
            tap: KeyTap {
                wanted: self.wanted,
                hit: &mut self.hit,
            },
        })
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        match self.hit.take() {
            Some(i) => self.map.next_value_seed(ValueSeed {
                seed,
                index: i,
                found: self.found,
            }),
            None => self.map.next_value_seed(seed),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

struct KeySeed<'f, 'w, K> {
    seed: K,
    tap: KeyTap<'f, 'w>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, '_, K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K::Value, D::Error> {
        // Keys are strings: note the key, then let `T` read it as it likes.
        let mut key = Found::default();
        let value = self.seed.deserialize(Tap {
            de: d,
            role: Role::Value(0),
            found: &mut key,
        })?;
        if let Some(k) = &key[0] {
            *self.tap.hit = self.tap.wanted.iter().position(|w| *w == Some(k.as_str()));
        }
        Ok(value)
    }
}

struct ValueSeed<'f, S> {
    seed: S,
    index: usize,
    found: &'f mut Found,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for ValueSeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Tap {
            de: d,
            role: Role::Value(self.index),
            found: self.found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Typed {
        id: String,
        data: serde_json::Value,
    }

    const BODY: &[u8] =
        br#"{"id":"evt_1","data":{"type":"nested","id":"no"},"type":"charge.succeeded","n":5}"#;

    #[test]
    fn fields_the_type_keeps_and_skips_are_both_found() {
        let (t, found): (Typed, _) = parse(BODY, [Some("id"), Some("type")]).unwrap();
        assert_eq!(t.id, "evt_1");
        assert_eq!(t.data["type"], "nested");
        assert_eq!(
            found,
            [Some("evt_1".into()), Some("charge.succeeded".into())]
        );
        let (_, found): (Typed, _) = parse(BODY, [None, Some("n")]).unwrap();
        assert_eq!(found, [None, Some("5".into())]);
    }

    #[test]
    fn the_result_is_what_serde_json_gives_for_every_shape() {
        let bodies: &[&[u8]] = &[
            BODY,
            br#"{"id":"a","data":null}"#,
            br#"{"id":"\u00e9\n","data":[1,2,{"x":true}],"type":{"not":"scalar"}}"#,
        ];
        for body in bodies {
            let (t, _): (Typed, _) = parse(body, [Some("id"), Some("type")]).unwrap();
            assert_eq!(t, serde_json::from_slice::<Typed>(body).unwrap());
            let (v, _): (serde_json::Value, _) = parse(body, [Some("type"), None]).unwrap();
            assert_eq!(
                v,
                serde_json::from_slice::<serde_json::Value>(body).unwrap()
            );
            let (m, _): (BTreeMap<String, serde_json::Value>, _) =
                parse(body, [Some("id"), None]).unwrap();
            assert_eq!(m, serde_json::from_slice::<BTreeMap<_, _>>(body).unwrap());
        }
        let (_, found): (Typed, _) = parse(bodies[2], [Some("id"), Some("type")]).unwrap();
        assert_eq!(found, [Some("é\n".into()), None], "objects are not scalars");
    }

    #[test]
    fn errors_are_serde_jsons_own() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"{\"id\":1,\"data\":0}",
            b"{\"id\":\"a\",\"data\":0} x",
        ] {
            let ours = parse::<Typed>(bad, [Some("id"), None]).unwrap_err();
            let theirs = serde_json::from_slice::<Typed>(bad).unwrap_err();
            assert_eq!(ours.to_string(), theirs.to_string());
        }
    }

    #[test]
    fn flattened_and_optional_types_still_parse() {
        #[derive(Deserialize)]
        struct Flat {
            #[serde(rename = "type")]
            kind: Option<String>,
            #[serde(flatten)]
            rest: BTreeMap<String, serde_json::Value>,
        }
        let (f, found): (Flat, _) = parse(BODY, [Some("type"), Some("id")]).unwrap();
        assert_eq!(f.kind.as_deref(), Some("charge.succeeded"));
        assert_eq!(f.rest["id"], "evt_1");
        assert_eq!(
            found,
            [Some("charge.succeeded".into()), Some("evt_1".into())]
        );
    }

    #[test]
    fn skim_reads_nested_and_top_level_fields_in_one_pass() {
        let body =
            br#"{"type":"charge.succeeded","data":{"object":{"id":"ch_1","n":5}},"id":"evt_1"}"#;
        let [a, b] = skim(body, [Some(&["id"]), Some(&["data", "object", "n"])]);
        assert_eq!((a.as_deref(), b.as_deref()), (Some("evt_1"), Some("5")));
        let [a, b] = skim(body, [Some(&["missing"]), None]);
        assert_eq!((a, b), (None, None));
        let [a, _] = skim(b"not json", [Some(&["id"]), None]);
        assert_eq!(a, None);
        let [a, _] = skim(br#"{"id":{"nested":1}}"#, [Some(&["id"]), None]);
        assert_eq!(a, None);
    }

    #[test]
    fn scalars_read_strings_and_numbers_and_skip_the_rest() {
        let s: Vec<Scalar> =
            serde_json::from_str(r#"["a", 1, -2, 1.5, true, null, {"x": [1]}, [[]]]"#).unwrap();
        let texts: Vec<_> = s.iter().map(Scalar::text).collect();
        assert_eq!(
            texts,
            [
                Some("a"),
                Some("1"),
                Some("-2"),
                Some("1.5"),
                Some("true"),
                None,
                None,
                None
            ]
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::RngSeed;
        use serde_json::Value;

        /// A fixed seed, so CI runs the same cases; `PROPTEST_CASES` asks for more.
        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 256,
                rng_seed: RngSeed::Fixed(0x6f75_7477_6f72_7831),
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        /// Any JSON document with integer numbers (floats print differently in serde_json
        /// and `f64::to_string`, which the readers do not promise to agree on).
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                "[a-z\\u{e9}\\u{1F600}\"\\\\ ]{0,8}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map("(id|type|data|[a-z]{1,3})", inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// A scalar as the readers give it.
        fn scalar(v: &Value) -> Option<String> {
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn the_tap_parses_as_serde_json_and_finds_the_top_level_scalars(doc in json()) {
                let text = serde_json::to_string(&doc).unwrap();
                let (value, found): (Value, _) = parse(text.as_bytes(), [Some("id"), Some("type")]).unwrap();
                prop_assert_eq!(&value, &doc);
                let want = |k: &str| doc.as_object().and_then(|o| o.get(k)).and_then(scalar);
                prop_assert_eq!(found, [want("id"), want("type")]);
            }

            #[test]
            fn skim_reads_what_a_document_lookup_reads(doc in json()) {
                let text = serde_json::to_string(&doc).unwrap();
                let [a, b] = skim(text.as_bytes(), [Some(&["id"]), Some(&["data", "type"])]);
                prop_assert_eq!(a, doc.get("id").and_then(scalar));
                prop_assert_eq!(b, doc.get("data").and_then(|d| d.get("type")).and_then(scalar));
            }

            #[test]
            fn the_readers_never_panic_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse::<Value>(&bytes, [Some("id"), None]);
                let _ = skim(&bytes, [Some(&["id"]), Some(&["a", "b"])]);
                let _ = serde_json::from_slice::<Scalar>(&bytes);
            }
        }
    }
}
