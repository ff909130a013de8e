//! `GET /openapi.json`: each service's OpenAPI document, made from the
//! `#[utoipa::path]` of its handlers and the typed answers they return (the
//! routers are built from the same handlers, so a route cannot be served
//! without being described). What every route shares is added here: the
//! error body, the bearer token.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};
use naga_core::wire::ErrorBody;
use utoipa::{
    openapi::{
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
        RefOr, ResponseBuilder,
    },
    PartialSchema, ToSchema,
};
use utoipa_axum::router::OpenApiRouter;

/// The document of a service's routes, as JSON text.
pub fn document<S: Clone + Send + Sync + 'static>(routes: OpenApiRouter<S>, title: &str) -> String {
    let mut doc = routes.into_openapi();
    doc.info.title = title.to_owned();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some(
        "naga: NagaAgent's session-scheduling servers. Every route but `/health` and the \
         dashboard's page asks for `Authorization: Bearer <token>` when `[auth] token` is \
         set (without one, naga listens on loopback only). Every error is \
         `{\"success\": false, \"detail\", \"code\"}`."
            .to_owned(),
    );
    doc.info.license = None;
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    // Bearer when a token is set; nothing asked on loopback without one.
    doc.security = Some(vec![
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::default(),
    ]);
    let error = ResponseBuilder::new()
        .description("An error: what was wrong and what to do")
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name(
                    ErrorBody::name(),
                )))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.delete,
            &mut item.put,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .entry("default".into())
                .or_insert_with(|| RefOr::T(error.clone()));
        }
    }
    doc.to_json().unwrap_or_else(|_| "{}".into())
}

pub fn serve(doc: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}
