//! Builds of a project: list, upload (an archive, streamed), register by a server path
//! (administrators, when the server allows it).

use super::ProjectPath;
use crate::auth::User;
use crate::problem::{ApiError, ApiResult, Problem};
use crate::{created, Body};
use axum::extract::{FromRequest, Path, Request};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use futures_util::TryStreamExt;
use pergola_core::artifacts::Compression;
use pergola_core::services::Acting;
use pergola_core::Services;
use pergola_domain::wire::NewBuild;
use pergola_domain::{Build, Error};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list_builds, register_build))
}

/// A build's files: a tar archive, compressed with gzip (`application/gzip`) or zstd
/// (`application/zstd`), with the manifest `pergola.toml` at its root.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Archive(Vec<u8>);

#[utoipa::path(get, path = "/api/v1/projects/{project}/builds", tag = "releases",
    params(ProjectPath),
    responses(
        (status = 200, description = "The project's builds, newest first", body = [Build]),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_builds(User(s): User, Path(p): Path<ProjectPath>) -> ApiResult<Json<Vec<Build>>> {
    Ok(Json(s.builds(&p.project).await?))
}

/// Uploads a build: the body is the archive (`application/gzip` or `application/zstd`),
/// streamed to the server, hashed (SHA-256) and stored once per content; its `pergola.toml` is
/// the manifest. A JSON body `{manifest, workdir}` registers a directory on the server instead
/// — administrators only, and only when the server runs with `PERGOLA_PATH_BUILDS=on`.
#[utoipa::path(post, path = "/api/v1/projects/{project}/builds", tag = "releases",
    params(ProjectPath),
    request_body(
        description = "The build's archive (tar + gzip or tar + zstd, `pergola.toml` at its root); or, for an \
                       administrator on a server with PERGOLA_PATH_BUILDS=on, a manifest and a directory on the server",
        content(
            (Archive = "application/gzip"),
            (Archive = "application/zstd"),
            (NewBuild = "application/json"),
        )
    ),
    responses(
        (status = 201, description = "Registered under the project's next build number", body = Build),
        (status = 400, description = "Malformed request (a JSON body that does not read, an upload that ended early)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The archive is larger than the server's limit (PERGOLA_MAX_ARTIFACT_MB): refused as soon as it passes it", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is neither application/gzip, application/zstd nor application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The archive was refused (the reason: a path outside it, a link, a device, too many entries, too large unpacked, truncated or corrupt), or its manifest is missing or malformed (with line and reason); a JSON registration while PERGOLA_PATH_BUILDS is off, or of a bad directory", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register_build(User(s): User, Path(p): Path<ProjectPath>, req: Request) -> ApiResult<impl IntoResponse> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let build = if let Some(compression) = Compression::from_content_type(content_type) {
        upload(&s, &p.project, compression, req).await?
    } else if content_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json") {
        let Body(b) = Body::<NewBuild>::from_request(req, &()).await?;
        s.register_build(&p.project, &b.manifest, &b.workdir).await?
    } else {
        let given = if content_type.is_empty() { "none".to_owned() } else { format!("'{content_type}'") };
        return Err(ApiError(Error::unsupported_media_type(format!(
            "Upload the build as a tar archive with Content-Type application/gzip or application/zstd (the \
             Content-Type was {given})."
        ))));
    };
    Ok(created(format!("/api/v1/projects/{}/builds/{}", p.project, build.number), build))
}

/// Streams the body into the services' upload: never held in memory whole. An announced
/// length over the limit is refused before anything is read. A refused upload whose body was
/// not read to its end is read on (and dropped) in the background for a while
/// ([`LINGER_FOR`], [`LINGER_BYTES`]), so that the client, still sending, gets to read the
/// answer instead of a connection reset.
async fn upload(s: &Acting, project: &str, compression: Compression, req: Request) -> ApiResult<Build> {
    let announced =
        req.headers().get(header::CONTENT_LENGTH).and_then(|l| l.to_str().ok()).and_then(|l| l.parse::<u64>().ok());
    let stream = req.into_body().into_data_stream().map_err(std::io::Error::other);
    let mut reader = tokio_util::io::StreamReader::new(stream);
    let uploaded = s.upload_build(project, compression, announced, &mut reader).await;
    if uploaded.is_err() {
        tokio::spawn(async move {
            let mut rest = tokio::io::AsyncReadExt::take(reader, LINGER_BYTES);
            let mut sink = tokio::io::sink();
            let _ = tokio::time::timeout(LINGER_FOR, tokio::io::copy(&mut rest, &mut sink)).await;
        });
    }
    Ok(uploaded?)
}

/// How long, and how much of, a refused upload's body is still read.
const LINGER_FOR: std::time::Duration = std::time::Duration::from_secs(10);
const LINGER_BYTES: u64 = 64 << 20;
