//! The page in the Prometheus text format, version 0.0.4.
//!
//! prometheus-client writes OpenMetrics text only (its issue 51; a Prometheus encoder is an open
//! pull request, 293): a counter's `# HELP` and `# TYPE` lines carry its name without `_total`
//! while its samples carry it, then `# EOF`. Prometheus reads that when asked for OpenMetrics,
//! but the 0.0.4 parser that promtool (Debian's 2.42) and most scrapers of plain text use reads
//! the samples as a family of their own without help or type, which `promtool check metrics`
//! refuses. So the page is rewritten line by line: a counter's two lines take the `_total` name
//! of its samples, and the OpenMetrics-only lines (`# UNIT`, `# EOF`) go. Nothing else differs for
//! the metric types hyperd uses (counters, gauges, histograms).

/// `open_metrics`, as prometheus-client wrote it, in the Prometheus 0.0.4 text format.
pub(super) fn prometheus(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len() + 256);
    // A family's HELP line comes before its TYPE line, which says whether it is renamed.
    let mut help: Option<&str> = None;
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush(&mut out, help.take(), "");
            help = Some(rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let counter = rest
                .strip_suffix(" counter")
                .filter(|name| !name.ends_with("_total"));
            match counter {
                Some(name) => {
                    flush(&mut out, help.take(), "_total");
                    push(&mut out, &format!("# TYPE {name}_total counter"));
                }
                None => {
                    flush(&mut out, help.take(), "");
                    push(&mut out, line);
                }
            }
        } else {
            flush(&mut out, help.take(), "");
            if !line.starts_with("# UNIT ") && line != "# EOF" {
                push(&mut out, line);
            }
        }
    }
    flush(&mut out, help, "");
    out
}

/// Writes a held HELP line (`name text`), its name given `suffix`.
fn flush(out: &mut String, help: Option<&str>, suffix: &str) {
    if let Some(rest) = help {
        let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
        push(out, &format!("# HELP {name}{suffix} {text}"));
    }
}

fn push(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::{Registry, Unit};

    use super::prometheus;

    fn page(registry: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, registry).unwrap();
        prometheus(&s)
    }

    #[test]
    fn a_counter_is_described_under_the_name_of_its_samples() {
        let mut r = Registry::with_prefix("x");
        let c = Counter::<u64>::default();
        c.inc_by(3);
        r.register("sent_bytes", "Bytes sent", c);
        let g = Gauge::<i64>::default();
        g.set(-2);
        r.register("open", "Open things", g);
        assert_eq!(
            page(&r),
            "# HELP x_sent_bytes_total Bytes sent.\n\
             # TYPE x_sent_bytes_total counter\n\
             x_sent_bytes_total 3\n\
             # HELP x_open Open things.\n\
             # TYPE x_open gauge\n\
             x_open -2\n"
        );
    }

    #[test]
    fn histograms_keep_their_lines_and_units_and_eof_go() {
        let mut r = Registry::default();
        let h = Histogram::new([1.0]);
        h.observe(0.5);
        r.register_with_unit("wait", "Waits", Unit::Seconds, h);
        assert_eq!(
            page(&r),
            "# HELP wait_seconds Waits.\n\
             # TYPE wait_seconds histogram\n\
             wait_seconds_sum 0.5\n\
             wait_seconds_count 1\n\
             wait_seconds_bucket{le=\"1.0\"} 1\n\
             wait_seconds_bucket{le=\"+Inf\"} 1\n"
        );
    }
}
