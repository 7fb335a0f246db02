//! A member as etcd writes it in JSON (Go's `json.Marshal` of `membership.Member`): in a conf
//! change's context, in the v2 store under `/0/members/<id>`, in the bbolt `members` bucket.
//! Members of a mixed cluster read each other's, so rustcd writes the same bytes etcd does:
//! `{"id":N,"peerURLs":[...],"isLearner":true,"name":"...","clientURLs":[...]}`, the last three
//! left out when empty, and a conf change that promotes a learner adds `"isPromote":true`
//! (etcd's `ConfigChangeContext`).

use rustcd_gocompat::{json_string, json_strings};
use serde::Deserialize;

/// A member's fields in etcd's JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MemberJson {
    pub id: u64,
    #[serde(rename = "peerURLs", default, deserialize_with = "null_as_empty")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "clientURLs", default, deserialize_with = "null_as_empty")]
    pub client_urls: Vec<String>,
}

/// A conf change's context: the member, and whether the change promotes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ConfChangeContext {
    #[serde(flatten)]
    pub member: MemberJson,
    #[serde(rename = "isPromote", default)]
    pub is_promote: bool,
}

/// A member's published attributes (`/0/members/<id>/attributes`): `{"name":..,"clientURLs":[..]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Attributes {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "clientURLs", default, deserialize_with = "null_as_empty")]
    pub client_urls: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl MemberJson {
    /// Go's JSON of the member.
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\"id\":{},\"peerURLs\":{}", self.id, json_strings(&self.peer_urls));
        self.push_rest(&mut out);
        out.push('}');
        out
    }

    fn push_rest(&self, out: &mut String) {
        if self.is_learner {
            out.push_str(",\"isLearner\":true");
        }
        Attributes { name: self.name.clone(), client_urls: self.client_urls.clone() }.push_fields(out);
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl ConfChangeContext {
    /// Go's JSON of etcd's `ConfigChangeContext` (the member, then `isPromote`).
    pub fn to_json(&self) -> String {
        let mut out = self.member.to_json();
        out.pop();
        out.push_str(if self.is_promote { ",\"isPromote\":true}" } else { ",\"isPromote\":false}" });
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl Attributes {
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        self.push_fields(&mut out);
        if out.len() > 1 {
            out.remove(1);
        }
        out.push('}');
        out
    }

    /// `,"name":..,"clientURLs":[..]`, each when not empty.
    fn push_fields(&self, out: &mut String) {
        if !self.name.is_empty() {
            out.push_str(&format!(",\"name\":{}", json_string(&self.name)));
        }
        if !self.client_urls.is_empty() {
            out.push_str(&format!(",\"clientURLs\":{}", json_strings(&self.client_urls)));
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The v2 store path of a member's published attributes.
pub fn attributes_path(id: u64) -> String {
    format!("/0/members/{id:x}/attributes")
}

/// The member ID in a v2 store path `/0/members/<id>/attributes`.
pub fn parse_attributes_path(path: &str) -> Option<u64> {
    let id = path.strip_prefix("/0/members/")?.strip_suffix("/attributes")?;
    u64::from_str_radix(id, 16).ok()
}

/// The v2 store path of the cluster version.
pub const CLUSTER_VERSION_PATH: &str = "/0/version";

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> MemberJson {
        MemberJson {
            id: 0x8e9e05c52164694d,
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            is_learner: true,
            name: "m<1>".into(),
            client_urls: vec!["http://127.0.0.1:2379".into()],
        }
    }

    #[test]
    fn json_is_go_s() {
        // Go (etcd 3.4.23's membership.Member and ConfigChangeContext), json.Marshal:
        assert_eq!(
            member().to_json(),
            r#"{"id":10276657743932975437,"peerURLs":["http://127.0.0.1:2380"],"isLearner":true,"name":"m\u003c1\u003e","clientURLs":["http://127.0.0.1:2379"]}"#
        );
        let bare = MemberJson { id: 1, peer_urls: vec!["http://a:1".into()], ..Default::default() };
        assert_eq!(bare.to_json(), r#"{"id":1,"peerURLs":["http://a:1"]}"#);
        let ctx = ConfChangeContext { member: bare.clone(), is_promote: true };
        assert_eq!(ctx.to_json(), r#"{"id":1,"peerURLs":["http://a:1"],"isPromote":true}"#);
        assert_eq!(ConfChangeContext::parse(ctx.to_json().as_bytes()).ok(), Some(ctx));
        assert_eq!(MemberJson::parse(member().to_json().as_bytes()).ok(), Some(member()));
        let a = Attributes { name: "m1".into(), client_urls: vec!["http://x:1".into()] };
        assert_eq!(a.to_json(), r#"{"name":"m1","clientURLs":["http://x:1"]}"#);
        assert_eq!(Attributes::default().to_json(), "{}");
        assert_eq!(
            Attributes { client_urls: vec!["u".into()], ..Default::default() }.to_json(),
            r#"{"clientURLs":["u"]}"#
        );
        assert_eq!(MemberJson::parse(br#"{"id":2,"peerURLs":null}"#).map(|m| m.id).ok(), Some(2));
    }

    #[test]
    fn attribute_paths() {
        assert_eq!(attributes_path(0xabc), "/0/members/abc/attributes");
        assert_eq!(parse_attributes_path("/0/members/abc/attributes"), Some(0xabc));
        assert_eq!(parse_attributes_path("/0/members/abc/raftAttributes"), None);
    }
}
