//! `hyperctl load`: stream a file or stdin to hyperd in 1 MiB chunks.

use std::process::ExitCode;

use anyhow::Context;
use futures_util::StreamExt;
use hyperd_proto::CHUNK_SIZE;
use hyperd_proto::v1::{LoadOptions, LoadRequest, RefMapping, load_request::Part};
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;

use super::Client;
use crate::cli::{LoadArgs, split_mapping};
use crate::progress;

pub(crate) async fn run(mut client: Client, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let refs = args
        .refs
        .iter()
        .map(|r| {
            split_mapping(r, "NAME:TAG=REFNAME")
                .map(|(name, ref_name)| RefMapping { name, ref_name })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (input, total): (Box<dyn AsyncRead + Send + Unpin>, Option<u64>) = match &args.input {
        Some(p) if p.as_os_str() != "-" => {
            let f = tokio::fs::File::open(p)
                .await
                .with_context(|| format!("opening {}", p.display()))?;
            let len = f.metadata().await.ok().map(|m| m.len());
            (Box::new(f), len)
        }
        _ => (Box::new(tokio::io::stdin()), None),
    };
    let bar = progress::bar(total, args.quiet, "loading");
    // A read error must abort the call, not end the stream: an archive cut short at an entry
    // boundary could otherwise look complete.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<std::io::Error>();
    let mut failed_tx = Some(failed_tx);
    let progress = bar.clone();
    let reader = ReaderStream::with_capacity(input, CHUNK_SIZE);
    let chunks = tokio_stream::StreamExt::map_while(reader, move |r| match r {
        Ok(chunk) => {
            progress.inc(chunk.len() as u64);
            Some(LoadRequest {
                part: Some(Part::Chunk(chunk)),
            })
        }
        Err(e) => {
            if let Some(tx) = failed_tx.take() {
                let _ = tx.send(e);
            }
            None
        }
    });
    let first = LoadRequest {
        part: Some(Part::Options(LoadOptions { refs })),
    };
    let body = futures_util::stream::once(async { first }).chain(chunks);
    let response = tokio::select! {
        biased;
        Ok(e) = failed_rx => return Err(anyhow::Error::new(e).context("reading the archive")),
        r = client.load(body) => r?.into_inner(),
    };
    bar.finish_and_clear();
    if !args.quiet {
        for image in &response.images {
            if image.names.is_empty() {
                println!("Loaded image ID: {}", image.id);
            }
            for name in &image.names {
                println!("Loaded image: {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
