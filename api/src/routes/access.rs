//! Accounts: signing in for a token (`pergola login`), who am I, API tokens, users
//! (administrators), project members (owners) and a project's activity.

use super::ProjectPath;
use crate::auth::{client_address, Auth, Authenticated, User};
use crate::problem::{ApiResult, Problem};
use crate::{created, Body};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use pergola_core::store::AuditFilter;
use pergola_core::Services;
use pergola_domain::wire::{Login, MemberInput, NewInvitation, NewToken, NewUser, PasswordChange, UserPatch};
use pergola_domain::{AuditEntry, CreatedInvitation, CreatedToken, InvitationInfo, Me, Member, TokenInfo, UserInfo};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(whoami))
        .routes(routes!(change_password))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_users, create_user))
        .routes(routes!(update_user))
        .routes(routes!(list_invitations, create_invitation))
        .routes(routes!(list_members, set_member))
        .routes(routes!(remove_member))
        .routes(routes!(project_events))
}

/// `/tokens/{name}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    /// Token name
    pub name: String,
}

/// `/users/{username}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// Username
    pub username: String,
}

/// `/projects/{project}/members/{username}`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberPath {
    /// Project ID
    #[param(pattern = "^[a-z](-?[a-z0-9])*$", min_length = 1, max_length = 63)]
    pub project: String,
    /// Username
    pub username: String,
}

/// Which changes to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only those of this stage
    pub stage: Option<String>,
    /// Only those of this actor (a username, or `NAME (token T)`)
    pub actor: Option<String>,
    /// Only those of this kind (e.g. `stage.deployed`, `member.added`)
    pub kind: Option<String>,
    /// At most this many (1 to 500, default 100)
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/login", tag = "access", request_body = Login, security(()),
    responses(
        (status = 201, description = "Signed in: a new API token, shown this once", body = CreatedToken),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong username or password (never says which)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid token name or expiry", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed sign-ins for this username from this address: see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
async fn login(State(services): State<Services>, req: Request) -> ApiResult<impl IntoResponse> {
    let address = client_address(&req);
    let Body(l) = <Body<Login> as axum::extract::FromRequest<Services>>::from_request(req, &services).await?;
    let name = l.token_name.as_deref().unwrap_or("cli");
    let token = services.sign_in_token(&l.username, &l.password, &address, name, l.expires_in_days).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[utoipa::path(post, path = "/api/v1/logout", tag = "access",
    responses((status = 204, description = "The API token of this request is revoked (or, from the dashboard, the session ended)")))]
async fn logout(User(s): User, Auth(auth): Auth) -> ApiResult<StatusCode> {
    match auth {
        Authenticated::Token(caller) => s.revoke_token(caller.token.as_deref().unwrap_or_default()).await?,
        Authenticated::Session { secret, .. } => s.end_session(&secret).await?,
        Authenticated::Anonymous | Authenticated::BuildFetch(_) => {}
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/user", tag = "access",
    responses((status = 200, description = "Who is signed in", body = Me)))]
async fn whoami(User(s): User) -> Json<Me> {
    Json(s.me())
}

#[utoipa::path(put, path = "/api/v1/user/password", tag = "access", request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The current password is not right, or the new one is too weak", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong current passwords from this address, or the server is checking too many passwords: see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
async fn change_password(User(s): User, Body(c): Body<PasswordChange>) -> ApiResult<StatusCode> {
    s.change_password(&c.current, &c.new).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "access",
    responses((status = 200, description = "Your API tokens (never their values), newest first", body = [TokenInfo])))]
async fn list_tokens(User(s): User) -> ApiResult<Json<Vec<TokenInfo>>> {
    Ok(Json(s.list_tokens().await?))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = NewToken,
    responses(
        (status = 201, description = "Created: its value is shown this once", body = CreatedToken),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or taken name, invalid expiry, or (with an API token) your_password missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong passwords (your_password) from your address, or the server is checking too many passwords at the moment: see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_token(User(s): User, Body(t): Body<NewToken>) -> ApiResult<impl IntoResponse> {
    let token = s.create_token(&t.name, t.expires_in_days, t.your_password.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "access", params(TokenPath),
    responses(
        (status = 204, description = "Revoked: it stops working at once"),
        (status = 404, description = "You have no live token of that name", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_token(User(s): User, Path(p): Path<TokenPath>) -> ApiResult<StatusCode> {
    s.revoke_token(&p.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/users", tag = "access",
    responses((status = 200, description = "Every user, by username (administrators only)", body = [UserInfo])))]
async fn list_users(User(s): User) -> ApiResult<Json<Vec<UserInfo>>> {
    Ok(Json(s.list_users().await?))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "access", request_body = NewUser,
    responses(
        (status = 201, description = "Created (administrators only)", body = UserInfo),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or taken username, too weak a password, or (with an API token) your_password missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong passwords (your_password) from your address, or the server is checking too many passwords at the moment: see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_user(User(s): User, Body(u): Body<NewUser>) -> ApiResult<impl IntoResponse> {
    let user = s.create_user(u).await?;
    Ok(created(format!("/api/v1/users/{}", user.username), user))
}

#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "access", params(UserPath), request_body = UserPatch,
    responses(
        (status = 200, description = "Changed (administrators only); disabling ends the user's sessions at once", body = UserInfo),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Disabling yourself or taking your own administrator role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Too weak a password, or (with an API token, for a password, the administrator role or enabling) your_password missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong passwords (your_password) from your address, or the server is checking too many passwords at the moment: see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_user(User(s): User, Path(p): Path<UserPath>, Body(u): Body<UserPatch>) -> ApiResult<Json<UserInfo>> {
    Ok(Json(s.update_user(&p.username, u).await?))
}

#[utoipa::path(get, path = "/api/v1/invitations", tag = "access",
    responses((status = 200, description = "Invitations not used yet and not expired, newest first (administrators only; never their links)", body = [InvitationInfo])))]
async fn list_invitations(User(s): User) -> ApiResult<Json<Vec<InvitationInfo>>> {
    Ok(Json(s.list_invitations().await?))
}

#[utoipa::path(post, path = "/api/v1/invitations", tag = "access", request_body = NewInvitation,
    responses(
        (status = 201, description = "Created (administrators only): the link, shown this once, works once for 7 days", body = CreatedInvitation),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A project without a role, a role without a project, or (with an API token) your_password missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong passwords (your_password) from your address, or the server is checking too many passwords at the moment: see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_invitation(User(s): User, Body(i): Body<NewInvitation>) -> ApiResult<impl IntoResponse> {
    let invitation = s.create_invitation(i).await?;
    Ok((StatusCode::CREATED, Json(invitation)))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/members", tag = "access", params(ProjectPath),
    responses(
        (status = 200, description = "The project's members, by username", body = [Member]),
        (status = 404, description = "No such project (or not yours to see)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_members(User(s): User, Path(p): Path<ProjectPath>) -> ApiResult<Json<Vec<Member>>> {
    Ok(Json(s.members(&p.project).await?))
}

#[utoipa::path(post, path = "/api/v1/projects/{project}/members", tag = "access", params(ProjectPath), request_body = MemberInput,
    responses(
        (status = 200, description = "The user is a member with that role (owners only)", body = Member),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such user (field `username`)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_member(User(s): User, Path(p): Path<ProjectPath>, Body(m): Body<MemberInput>) -> ApiResult<Json<Member>> {
    Ok(Json(s.set_member(&p.project, &m.username, m.role, m.your_password.as_deref()).await?))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/members/{username}", tag = "access", params(MemberPath),
    responses(
        (status = 204, description = "No longer a member (owners only)"),
        (status = 404, description = "No such project, or not a member", body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove_member(User(s): User, Path(p): Path<MemberPath>) -> ApiResult<StatusCode> {
    s.remove_member(&p.project, &p.username).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/events", tag = "access", params(ProjectPath, EventsQuery),
    responses(
        (status = 200, description = "The project's activity: who changed what, newest first", body = [AuditEntry]),
        (status = 400, description = "`limit` is not a whole number (a plain-text message)", body = String, content_type = "text/plain"),
        (status = 422, description = "`limit` out of range", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project (or not yours to see)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn project_events(
    User(s): User,
    Path(p): Path<ProjectPath>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(pergola_domain::Error::validation("limit", "limit must be 1 to 500.").into());
    }
    let filter = AuditFilter { stage_id: q.stage, actor: q.actor, kind: q.kind };
    Ok(Json(s.project_activity(&p.project, filter, limit).await?))
}
