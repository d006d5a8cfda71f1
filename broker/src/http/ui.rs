//! `GET /ui`: the dashboard (API.md §7). Its three files are compiled into
//! the binary (nothing is fetched at run time); the page reads the API of
//! the broker that served it, with the token the user gives it.

use actix_web::http::header;
use actix_web::HttpResponse;

const INDEX: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/dashboard.js");
const STYLE: &str = include_str!("../../ui/dashboard.css");

#[utoipa::path(
    get,
    path = "/ui",
    operation_id = "dashboard",
    tag = "operator",
    responses((status = 200, description = "The dashboard", body = String, content_type = "text/html"))
)]
pub async fn index() -> HttpResponse {
    file("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> HttpResponse {
    file("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> HttpResponse {
    file("text/css; charset=utf-8", STYLE)
}

fn file(content_type: &'static str, text: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(text)
}
