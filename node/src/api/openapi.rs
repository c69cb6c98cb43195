//! What the OpenAPI document adds to what the handlers declare: the bearer security scheme,
//! and on every operation the refusals any route can answer (the gate, the route rules, the
//! limits; docs/api.md, "Errors"). The document itself is [`super::server::ApiDoc`].

/// The `bearer` security scheme: `Authorization: Bearer <token>`, asked for off loopback or
/// with `api.require_token`.
#[derive(Debug)]
pub(super) struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "the daemon repository's keys/api.token (admin), or a token of `ipvec token create` (role read or write); needed off loopback or with api.require_token",
                    ))
                    .build(),
            ),
        );
    }
}

/// The refusals any route can answer, before or around its own work (docs/api.md, "Errors"),
/// added to every operation that does not name them itself.
#[derive(Debug)]
pub(super) struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        const ANY_ROUTE: [(u16, &str); 13] = [
            (400, "malformed request: a path segment, query or body that does not parse, or a number outside its limit"),
            (401, "a token is required and was missing, wrong or revoked"),
            (403, "a Host or Origin this API does not answer, a read-only token on a route that writes, or a backup folder outside backup.dir without the admin token"),
            (404, "no such collection, point, block or route"),
            (409, "the collection is being dropped, already exists, or is a read-only replica"),
            (413, "the body or batch is over its limit"),
            (414, "the URL is over 8 KiB"),
            (415, "a body that is not JSON (or CAR where a CAR is taken)"),
            (429, "the caller (token or client address) is over limits.read_rate or limits.write_rate; see Retry-After"),
            (500, "a failure inside the node"),
            (503, "busy (no free slot for this kind of request; see Retry-After), or not ready"),
            (504, "the operation ran past its deadline"),
            (507, "the block store is at storage.max_bytes, or the write would pass a quota (limits.collection_max_*, limits.token_max_*)"),
        ];
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                for (status, description) in ANY_ROUTE {
                    let error = ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build();
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content("application/json", error)
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}
