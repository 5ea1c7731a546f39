//! The Docker backend of [`Source`]: the engine's logs API, followed, with timestamps.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::LogsOptions;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::capture::{Chunk, Source, SourceError};
use super::record::Stream;

/// Reads container output through the Docker API.
pub struct DockerSource(pub Docker);

impl Source for DockerSource {
    fn follow(&self, container: &str, since: i64) -> BoxStream<'static, Result<Chunk, SourceError>> {
        let opts = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: i32::try_from(since).unwrap_or(i32::MAX),
            ..Default::default()
        };
        let id = container.to_string();
        self.0
            .logs(container, Some(opts))
            .map(move |r| match r {
                Ok(LogOutput::StdErr { message }) => Ok(Chunk { stream: Stream::Stderr, bytes: message }),
                // herd never gives containers a TTY; anything else is treated as stdout.
                Ok(other) => Ok(Chunk { stream: Stream::Stdout, bytes: other.into_bytes() }),
                Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Err(SourceError::Gone(id.clone())),
                Err(e) => Err(SourceError::Read { container: id.clone(), message: e.to_string() }),
            })
            .boxed()
    }
}
