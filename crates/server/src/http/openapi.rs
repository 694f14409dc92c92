//! `GET /openapi.json`: the route table as an OpenAPI 3.1 document (utoipa's builders),
//! built once: every route with its path and query parameters, its body, its success
//! status, the error shape every route shares (with the codes of the error table), and
//! the ways to authenticate (a `sessionToken` header, a bearer token, Basic).

use std::sync::OnceLock;

use cairn_proto::{ErrorCode, MethodKind, Permission};
use serde_json::Value as Json;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApiBuilder, PathItem,
    PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};

use super::routes::{Action, Route, Verb, ROUTES};

/// The ways a request may authenticate, as the document names them.
const SECURITY: [&str; 3] = ["sessionToken", "bearer", "basic"];

/// The document, built on first use.
pub fn document() -> &'static Json {
    static DOCUMENT: OnceLock<Json> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

fn build() -> Json {
    let mut paths = PathsBuilder::new();
    for route in ROUTES {
        let method = match route.verb {
            Verb::Get => HttpMethod::Get,
            Verb::Put => HttpMethod::Put,
            Verb::Post => HttpMethod::Post,
            Verb::Delete => HttpMethod::Delete,
        };
        paths = paths.path(route.path, PathItem::new(method, operation(route)));
    }
    let error = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "error",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str()))),
        )
        .required("error")
        .property("reason", ObjectBuilder::new().schema_type(Type::String))
        .required("reason")
        .property("details", any())
        .build();
    let components = ComponentsBuilder::new()
        .schema("Error", Schema::Object(error))
        .response(
            "Error",
            ResponseBuilder::new()
                .description("An error: its code (from the error table), a reason, details")
                .content(
                    "application/json",
                    json_content(Ref::from_schema_name("Error")),
                ),
        )
        .security_scheme(
            SECURITY[0],
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("sessionToken"))),
        )
        .security_scheme(
            SECURITY[1],
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        )
        .security_scheme(
            SECURITY[2],
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        )
        .build();
    let info = InfoBuilder::new()
        .title("Cairn")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The HTTPS JSON API of a Cairn service: the methods of its native protocol \
             (PROTOCOL.md), shaped as the seeds' admin APIs.",
        ))
        .build();
    let document = OpenApiBuilder::new()
        .info(info)
        .paths(paths.build())
        .components(Some(components))
        .build();
    serde_json::to_value(&document).expect("an OpenAPI document serializes")
}

fn operation(route: &Route) -> utoipa::openapi::path::Operation {
    let id: String = format!("{}{}", route.verb.as_str(), route.path)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let (description, anyone, kind) = match route.action {
        Action::Call { method, .. } => (
            format!("Calls the native method `{method}` (PROTOCOL.md)."),
            method.permission() == Permission::Anyone,
            Some(method.kind()),
        ),
        Action::Up | Action::OpenApi | Action::Console(_) | Action::ConsoleRedirect => {
            ("Served by the HTTP API itself.".to_string(), true, None)
        }
        Action::Metrics => ("Served by the HTTP API itself.".to_string(), false, None),
    };
    let mut operation = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(route.summary))
        .description(Some(description));
    for segment in route.path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
    }
    for name in route.query {
        operation = operation.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    if matches!(route.verb, Verb::Put | Verb::Post) {
        operation = operation.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json_content(any()))
                .required(Some(Required::False))
                .build(),
        ));
    }
    let mut success = match route.action {
        Action::Metrics => ResponseBuilder::new()
            .description("The metrics in the OpenMetrics text format")
            .content(super::handler::METRICS_CONTENT_TYPE, json_content(any())),
        Action::Console(_) => ResponseBuilder::new()
            .description("A file of the operator's console (HTML, JavaScript or CSS)")
            .content("text/html", json_content(any())),
        Action::ConsoleRedirect => ResponseBuilder::new().description("To /_ui/"),
        _ => ResponseBuilder::new()
            .description("The method's result as JSON")
            .content("application/json", json_content(any())),
    };
    if kind == Some(MethodKind::Stream) {
        success = success
            .content("application/x-ndjson", json_content(any()))
            .content("text/event-stream", json_content(any()));
    }
    operation = operation
        .response(route.ok.to_string(), success)
        .response("default", RefOr::Ref(Ref::from_response_name("Error")));
    if !anyone {
        for scheme in SECURITY {
            operation = operation.security(SecurityRequirement::new(scheme, Vec::<String>::new()));
        }
    }
    operation.build()
}

/// Any JSON value.
fn any() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
}

fn json_content(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document_once() {
        let document = document();
        let mut operations = 0;
        for route in ROUTES {
            let verb = route.verb.as_str().to_ascii_lowercase();
            let operation = &document["paths"][route.path][&verb];
            assert!(
                operation.is_object(),
                "{} {} is not documented",
                route.verb.as_str(),
                route.path
            );
            assert_eq!(operation["summary"], route.summary);
            operations += 1;
        }
        let documented: usize = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented, operations,
            "the document has operations the table lacks"
        );
        let status = &document["paths"]["/v1/admin/status"]["get"];
        assert!(status.get("security").is_none(), "status is anyone's");
        assert!(document["paths"]["/{db}/{key}"]["put"]["security"].is_array());
    }
}
