//! `GET /ui`: the dashboard (API.md §7), one page with its style and
//! script inlined, compiled into the binary (nothing is fetched at run
//! time). The page reads the API of the broker that served it, with the
//! token the user gives it. With `--auth-file` a request without a valid
//! token is answered `401` (API.md §5.2) with the same page as its body,
//! so that a browser shows it and it can ask for the token.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};

/// The page, its style and script in place.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("../../ui/index.html")
        .replace("/* STYLE */", include_str!("../../ui/dashboard.css"))
        .replace("/* SCRIPT */", include_str!("../../ui/dashboard.js"))
});

#[utoipa::path(
    get,
    path = "/ui",
    operation_id = "dashboard",
    tag = "operator",
    responses(
        (status = 200, description = "The dashboard", body = String, content_type = "text/html"),
        (status = 401, description = "No valid token (with --auth-file): the dashboard, which asks for one", body = String, content_type = "text/html")
    )
)]
pub async fn index() -> HttpResponse {
    page(HttpResponse::Ok())
}

/// The answer to a request for the dashboard without a valid token.
pub fn refused() -> HttpResponse {
    let mut answer = HttpResponse::Unauthorized();
    answer.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    page(answer)
}

fn page(mut answer: HttpResponseBuilder) -> HttpResponse {
    answer
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("Content-Security-Policy", "frame-ancestors 'none'"))
        .body(PAGE.as_str())
}
