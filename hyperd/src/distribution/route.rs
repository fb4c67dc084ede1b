//! Which endpoint a request's path names, and its query. Pure. A `<name>` holds slashes, so the
//! path is read from its end: `/v2/<name>/manifests/<reference>`, `/v2/<name>/blobs/<digest>`,
//! `/v2/<name>/tags/list`, `/v2/<name>/referrers/<digest>`, `/v2/<name>/blobs/uploads/[<id>]`;
//! the name is checked later (`names.rs`), and digests are parsed, never joined into a path.

/// An endpoint of the spec.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route<'a> {
    /// `/v2/`: the API is here.
    Base,
    /// `/v2/_catalog`
    Catalog,
    Manifest {
        name: &'a str,
        reference: &'a str,
    },
    Blob {
        name: &'a str,
        digest: &'a str,
    },
    Tags {
        name: &'a str,
    },
    Referrers {
        name: &'a str,
        digest: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/`: starts an upload (or mounts a blob).
    Uploads {
        name: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/<id>`: one upload.
    Upload {
        name: &'a str,
        id: &'a str,
    },
}

/// The endpoint at `path`, `None` when it is none.
pub(super) fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags { name });
    }
    // `/blobs/uploads` as whole path components only: a repository may be named `uploadsx`.
    if let Some((name, after)) = rest.split_once("/blobs/uploads")
        && (after.is_empty() || after.starts_with('/'))
    {
        if name.is_empty() {
            return None;
        }
        return match after.trim_start_matches('/') {
            "" => Some(Route::Uploads { name }),
            id if !id.contains('/') => Some(Route::Upload { name, id }),
            _ => None,
        };
    }
    let (front, last) = rest.rsplit_once('/')?;
    let (name, kind) = front.rsplit_once('/')?;
    if last.is_empty() {
        return None;
    }
    match kind {
        "manifests" => Some(Route::Manifest {
            name,
            reference: last,
        }),
        "blobs" => Some(Route::Blob { name, digest: last }),
        "referrers" => Some(Route::Referrers { name, digest: last }),
        _ => None,
    }
}

/// The query parameters the endpoints take; the others are ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Query {
    /// containerd's mirror host (`ns=127.0.0.1%3A5601`), percent-decoded.
    pub(super) ns: Option<String>,
    pub(super) n: Option<String>,
    pub(super) last: Option<String>,
    pub(super) artifact_type: Option<String>,
    /// A push's `?digest=`: the blob an upload is, or ends as.
    pub(super) digest: Option<String>,
    /// A cross-repository mount's `?mount=DIGEST&from=REPOSITORY`.
    pub(super) mount: Option<String>,
    pub(super) from: Option<String>,
}

pub(super) fn query(raw: Option<&str>) -> Query {
    let mut q = Query::default();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let slot = match key.as_ref() {
            "ns" => &mut q.ns,
            "n" => &mut q.n,
            "last" => &mut q.last,
            "artifactType" => &mut q.artifact_type,
            "digest" => &mut q.digest,
            "mount" => &mut q.mount,
            "from" => &mut q.from,
            _ => continue,
        };
        slot.get_or_insert_with(|| value.into_owned());
    }
    q
}

/// The query of a `Link` to the next page.
pub(super) fn next_page(n: usize, last: &str, ns: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("n", &n.to_string())
        .append_pair("last", last);
    if let Some(ns) = ns {
        query.append_pair("ns", ns);
    }
    query.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_from_their_end() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        let manifest = |name, reference| Some(Route::Manifest { name, reference });
        assert_eq!(route("/v2/a/b/manifests/1"), manifest("a/b", "1"));
        assert_eq!(
            route("/v2/manifests/manifests/latest"),
            manifest("manifests", "latest")
        );
        assert_eq!(
            route("/v2/a/blobs/sha256:00"),
            Some(Route::Blob {
                name: "a",
                digest: "sha256:00"
            })
        );
        assert_eq!(
            route("/v2/x/y/tags/list"),
            Some(Route::Tags { name: "x/y" })
        );
        assert_eq!(
            route("/v2/a/referrers/sha256:00"),
            Some(Route::Referrers {
                name: "a",
                digest: "sha256:00"
            })
        );
        assert_eq!(
            route("/v2/a/b/blobs/uploads/"),
            Some(Route::Uploads { name: "a/b" })
        );
        assert_eq!(
            route("/v2/a/blobs/uploads"),
            Some(Route::Uploads { name: "a" })
        );
        assert_eq!(
            route("/v2/a/blobs/uploads/123"),
            Some(Route::Upload {
                name: "a",
                id: "123"
            })
        );
        assert_eq!(
            route("/v2/a/blobs/uploadsx/manifests/1"),
            Some(Route::Manifest {
                name: "a/blobs/uploadsx",
                reference: "1"
            })
        );
    }

    #[test]
    fn other_paths_are_no_route() {
        for path in [
            "/",
            "/v1/",
            "/v2x",
            "/v2/a",
            "/v2/a/manifests/",
            "/v2/manifests/1",
            "/v2/a/other/1",
            "/v2/blobs/uploads/",
            "/v2/a/blobs/uploads/1/2",
        ] {
            assert_eq!(route(path), None, "{path}");
        }
    }

    #[test]
    fn the_query_is_percent_decoded_and_the_first_value_counts() {
        let q = query(Some(
            "ns=127.0.0.1%3A5601&n=2&last=a%2Bb&n=9&artifactType=x%2Fy&z=1&digest=sha256%3A0",
        ));
        assert_eq!(q.digest.as_deref(), Some("sha256:0"));
        assert_eq!(q.ns.as_deref(), Some("127.0.0.1:5601"));
        assert_eq!(q.n.as_deref(), Some("2"));
        assert_eq!(q.last.as_deref(), Some("a+b"));
        assert_eq!(q.artifact_type.as_deref(), Some("x/y"));
        assert_eq!(query(None), Query::default());
        assert_eq!(next_page(2, "a b", Some("h:1")), "n=2&last=a+b&ns=h%3A1");
    }
}
