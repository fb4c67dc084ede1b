//! `hyperctl events`: what hyperd does, one line per event as `docker events` prints them, or
//! one JSON object per line; past events first with `--since`, then live ones until `--until`
//! or an interrupt.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use hyperd_proto::tonic::transport::Channel;
use hyperd_proto::v1::event_service_client::EventServiceClient;
use hyperd_proto::v1::{Event, SubscribeRequest};

use crate::cli::EventsArgs;

pub(crate) async fn run(
    mut client: EventServiceClient<Channel>,
    args: EventsArgs,
) -> anyhow::Result<ExitCode> {
    let mut request = SubscribeRequest {
        since_unix_nano: args.since,
        until_unix_nano: args.until,
        ..SubscribeRequest::default()
    };
    for filter in &args.filters {
        match filter.split_once('=') {
            Some(("type", t)) => request.types.push(t.to_owned()),
            Some(("image", i)) => request.images.push(i.to_owned()),
            _ => anyhow::bail!("--filter {filter}: only type=TYPE and image=IMAGE are supported"),
        }
    }
    let json = args.format.is_some();
    let mut events = client.subscribe(request).await?.into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(event) = events.message().await? {
        let line = match json {
            true => json_line(&event),
            false => text_line(&event),
        };
        // Each line as it comes: a reader follows events live.
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn time(event: &Event) -> String {
    let nanos = u64::try_from(event.time_unix_nano).unwrap_or(0);
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(nanos)).to_string()
}

/// docker's line: `TIME image TYPE ACTOR (name=…, KEY=VALUE…, uid=…)`, the actor being the
/// digest, else the image ID, else the name.
fn text_line(e: &Event) -> String {
    let actor = [&e.digest, &e.id, &e.name]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    let mut attributes = Vec::new();
    if !e.name.is_empty() && e.name != actor {
        attributes.push(format!("name={}", e.name));
    }
    if !e.id.is_empty() && e.id != actor {
        attributes.push(format!("id={}", e.id));
    }
    let mut others: Vec<_> = e.attributes.iter().collect();
    others.sort();
    attributes.extend(others.into_iter().map(|(k, v)| format!("{k}={v}")));
    if let Some(uid) = e.uid {
        attributes.push(format!("uid={uid}"));
    }
    let mut line = format!("{} image {}", time(e), e.r#type);
    if !actor.is_empty() {
        line.push(' ');
        line.push_str(&actor);
    }
    if !attributes.is_empty() {
        line.push_str(&format!(" ({})", attributes.join(", ")));
    }
    hyperd_proto::escape_controls(&line).into_owned()
}

fn json_line(e: &Event) -> String {
    let attributes: std::collections::BTreeMap<_, _> = e.attributes.iter().collect();
    serde_json::json!({
        "time": time(e),
        "timeNano": e.time_unix_nano,
        "sequence": e.sequence,
        "type": e.r#type,
        "digest": e.digest,
        "name": e.name,
        "id": e.id,
        "uid": e.uid,
        "attributes": attributes,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_like_dockers() {
        let mut e = Event {
            time_unix_nano: 1_796_313_600_123_456_789,
            sequence: 7,
            r#type: "load".into(),
            digest: "sha256:ab".into(),
            name: "app:1".into(),
            id: "sha256:cd".into(),
            uid: Some(0),
            ..Event::default()
        };
        assert_eq!(
            text_line(&e),
            "2026-12-03T16:00:00.123456789Z image load sha256:ab (name=app:1, id=sha256:cd, uid=0)"
        );
        e.digest.clear();
        e.id.clear();
        e.name.clear();
        e.uid = None;
        e.r#type = "gc".into();
        e.attributes.insert("bytes".into(), "10".into());
        e.attributes.insert("blobs".into(), "2".into());
        assert_eq!(
            text_line(&e),
            "2026-12-03T16:00:00.123456789Z image gc (blobs=2, bytes=10)"
        );
        let v: serde_json::Value = serde_json::from_str(&json_line(&e)).unwrap();
        assert_eq!(v["type"], "gc");
        assert_eq!(v["attributes"]["bytes"], "10");
        assert_eq!(v["uid"], serde_json::Value::Null);
        assert_eq!(v["sequence"], 7);
    }

    #[test]
    fn when_is_a_time_or_a_duration_before_now() {
        use crate::cli::unix_nanos;
        assert_eq!(unix_nanos("0"), Ok(0));
        assert_eq!(unix_nanos("1796313600.5"), Ok(1_796_313_600_500_000_000));
        assert_eq!(
            unix_nanos("2026-12-03T16:00:00.123456789Z"),
            Ok(1_796_313_600_123_456_789)
        );
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap();
        let ago = unix_nanos("10m").unwrap();
        let want = now.as_nanos() as i64 - 600_000_000_000;
        assert!((ago - want).abs() < 60_000_000_000, "{ago} {want}");
        assert!(unix_nanos("yesterday-ish").is_err());
    }
}
