//! The OpenAPI 3 document of the API (served at `/api/v1/openapi.json`).

use serde_json::{json, Value};

fn param(name: &str, ty: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": { "type": ty } })
}

fn list_op(summary: &str, params: &[(&str, &str)], item: Value, paginated: bool) -> Value {
    let mut ps: Vec<Value> = params.iter().map(|(n, t)| param(n, t)).collect();
    ps.push(json!({ "name": "Workspace", "in": "header", "required": false, "schema": { "type": "string" } }));
    let body = if paginated {
        ps.push(param("page_size", "integer"));
        ps.push(param("next_token", "string"));
        json!({ "type": "object", "required": ["next", "previous", "results"], "properties": {
            "next": { "type": ["string", "null"] }, "previous": { "type": ["string", "null"] },
            "results": { "type": "array", "items": item } } })
    } else {
        json!({ "type": "array", "items": item })
    };
    json!({ "get": { "summary": summary, "parameters": ps, "responses": {
        "200": { "description": "OK", "content": { "application/json": { "schema": body } } },
        "400": { "description": "Bad parameter", "content": { "application/json": { "schema": { "type": "object" } } } },
        "401": { "description": "No valid bearer token (with auth on; docs/auth.md): {detail, code}", "content": { "application/json": { "schema": { "type": "object" } } } },
        "403": { "description": "The token's roles do not give this workspace: {detail, code}", "content": { "application/json": { "schema": { "type": "object" } } } },
        "404": { "description": "Unknown workspace", "content": { "application/json": { "schema": { "type": "object" } } } },
        "413": { "description": "One item alone is larger than a response may be (DIALS_RESPONSE_MAX_BYTES)", "content": { "application/json": { "schema": { "type": "object" } } } },
        "503": { "description": "The lake's store failed or did not answer in time; see Retry-After", "content": { "application/json": { "schema": { "type": "object" } } } } } } })
}

/// cert-json / golden-json: POST with a JSON body (cmsdials 2.4.1) or GET with comma-separated
/// parameters (DIALS v1.12); the three lists are required.
fn cert_op(summary: &str) -> Value {
    let keys = ["model_id__in", "dataset_id__in", "run_number__in"];
    let ints = json!({ "type": "array", "items": { "type": "integer" } });
    let body = json!({ "type": "object", "required": keys, "properties": { "model_id__in": ints, "dataset_id__in": ints, "run_number__in": ints } });
    let mut ps: Vec<Value> = keys.iter().map(|k| json!({ "name": k, "in": "query", "required": true, "schema": { "type": "string" } })).collect();
    ps.push(json!({ "name": "Workspace", "in": "header", "required": false, "schema": { "type": "string" } }));
    let responses = json!({
        "200": { "description": "OK", "content": { "application/json": { "schema": { "type": "object" } } } },
        "400": { "description": "Missing or invalid parameter, unknown model id", "content": { "application/json": { "schema": { "type": "object" } } } },
        "404": { "description": "Unknown workspace", "content": { "application/json": { "schema": { "type": "object" } } } } });
    let hdr = json!([{ "name": "Workspace", "in": "header", "required": false, "schema": { "type": "string" } }]);
    json!({
        "get": { "summary": summary, "parameters": ps, "responses": responses },
        "post": { "summary": summary, "parameters": hdr, "requestBody": { "required": true, "content": { "application/json": { "schema": body } } }, "responses": responses },
    })
}

fn obj(fields: &[(&str, &str)]) -> Value {
    let props: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(n, t)| {
            let s = match *t {
                "int?" => json!({ "type": ["integer", "null"] }),
                "num?" => json!({ "type": ["number", "null"] }),
                "str?" => json!({ "type": ["string", "null"] }),
                "array" => json!({ "type": "array" }),
                "arr?" => json!({ "type": ["array", "null"] }),
                other => json!({ "type": other }),
            };
            (n.to_string(), s)
        })
        .collect();
    json!({ "type": "object", "properties": props, "required": fields.iter().map(|(n, _)| *n).collect::<Vec<_>>() })
}

/// The document.
pub fn document() -> Value {
    let hist_params: Vec<(&str, &str)> = vec![
        ("dataset_id", "integer"),
        ("file_id", "integer"),
        ("run_number", "integer"),
        ("run_number__gte", "integer"),
        ("run_number__lte", "integer"),
        ("ls_number", "integer"),
        ("ls_number__gte", "integer"),
        ("ls_number__lte", "integer"),
        ("ls_numbet__lte", "integer"),
        ("me_id", "integer"),
        ("entries__gte", "integer"),
        ("dataset", "string"),
        ("dataset__regex", "string"),
        ("logical_file_name", "string"),
        ("logical_file_name__regex", "string"),
        ("me", "string"),
        ("me__regex", "string"),
        ("kind", "string"),
        ("format", "string"),
        ("scope", "string"),
    ];
    let scalar_params: Vec<(&str, &str)> = hist_params
        .iter()
        .copied()
        .filter(|(n, _)| *n != "entries__gte")
        .collect();
    let keys: [(&str, &str); 9] = [
        ("dataset", "string"),
        ("me", "string"),
        ("dataset_id", "integer"),
        ("file_id", "integer"),
        ("run_number", "integer"),
        ("ls_number", "integer"),
        ("me_id", "integer"),
        ("kind", "string"),
        ("flags", "integer"),
    ];
    let with_keys = |rest: &[(&'static str, &'static str)]| -> Value {
        let mut all: Vec<(&str, &str)> = keys.to_vec();
        all.extend_from_slice(rest);
        obj(&all)
    };
    let th3 = with_keys(&[
        ("x_min", "number"),
        ("x_max", "number"),
        ("x_bin", "integer"),
        ("y_min", "number"),
        ("y_max", "number"),
        ("y_bin", "integer"),
        ("z_min", "number"),
        ("z_max", "number"),
        ("z_bin", "integer"),
        ("entries", "integer"),
        ("data", "array"),
        ("x_edges", "arr?"),
        ("y_edges", "arr?"),
        ("z_edges", "arr?"),
        ("x_labels", "arr?"),
        ("y_labels", "arr?"),
        ("z_labels", "arr?"),
    ]);
    let profile1d = with_keys(&[
        ("x_min", "number"),
        ("x_max", "number"),
        ("x_bin", "integer"),
        ("entries", "integer"),
        ("data", "array"),
        ("underflow", "number"),
        ("overflow", "number"),
        ("bin_entries", "arr?"),
        ("bin_sums", "arr?"),
        ("sumw2", "arr?"),
        ("x_edges", "arr?"),
        ("x_labels", "arr?"),
    ]);
    let profile2d = with_keys(&[
        ("x_min", "number"),
        ("x_max", "number"),
        ("x_bin", "integer"),
        ("y_min", "number"),
        ("y_max", "number"),
        ("y_bin", "integer"),
        ("entries", "integer"),
        ("data", "array"),
        ("bin_entries", "arr?"),
        ("bin_sums", "arr?"),
        ("sumw2", "arr?"),
        ("x_edges", "arr?"),
        ("y_edges", "arr?"),
        ("x_labels", "arr?"),
        ("y_labels", "arr?"),
    ]);
    let scalar = with_keys(&[
        ("value_int", "int?"),
        ("value_float", "num?"),
        ("value_string", "str?"),
    ]);
    let th1 = obj(&[
        ("dataset", "string"),
        ("me", "string"),
        ("dataset_id", "integer"),
        ("file_id", "integer"),
        ("run_number", "integer"),
        ("ls_number", "integer"),
        ("me_id", "integer"),
        ("x_min", "number"),
        ("x_max", "number"),
        ("x_bin", "integer"),
        ("entries", "integer"),
        ("data", "array"),
        ("underflow", "num?"),
        ("overflow", "num?"),
        ("x_edges", "arr?"),
        ("x_labels", "arr?"),
        ("kind", "string"),
    ]);
    let th2 = obj(&[
        ("dataset", "string"),
        ("me", "string"),
        ("dataset_id", "integer"),
        ("file_id", "integer"),
        ("run_number", "integer"),
        ("ls_number", "integer"),
        ("me_id", "integer"),
        ("x_min", "number"),
        ("x_max", "number"),
        ("x_bin", "integer"),
        ("y_min", "number"),
        ("y_max", "number"),
        ("y_bin", "integer"),
        ("entries", "integer"),
        ("data", "array"),
        ("x_edges", "arr?"),
        ("y_edges", "arr?"),
        ("x_labels", "arr?"),
        ("y_labels", "arr?"),
        ("kind", "string"),
    ]);
    let run = obj(&[
        ("dataset_id", "integer"),
        ("dataset", "string"),
        ("run_number", "integer"),
        ("ls_count", "integer"),
        ("ls_completeness", "num?"),
    ]);
    let ls = obj(&[
        ("dataset_id", "integer"),
        ("dataset", "string"),
        ("run_number", "integer"),
        ("ls_number", "integer"),
        ("th1_count", "integer"),
        ("th2_count", "integer"),
        ("th3_count", "integer"),
        ("profile1d_count", "integer"),
        ("profile2d_count", "integer"),
        ("scalar_count", "integer"),
    ]);
    let file = obj(&[
        ("dataset_id", "integer"),
        ("dataset", "string"),
        ("file_id", "integer"),
        ("file_size", "integer"),
        ("creation_date", "string"),
        ("last_modification_date", "string"),
        ("logical_file_name", "string"),
        ("status", "string"),
        ("err_trace", "str?"),
    ]);
    let ds = obj(&[
        ("dataset_id", "integer"),
        ("dataset", "string"),
        ("era", "string"),
        ("data_tier", "string"),
        ("primary_ds_name", "string"),
        ("processed_ds_name", "string"),
        ("processing_version", "integer"),
        ("last_modification_date", "string"),
    ]);
    let me = obj(&[
        ("me_id", "integer"),
        ("me", "string"),
        ("count", "integer"),
        ("dim", "integer"),
        ("kind", "string"),
    ]);
    let model = obj(&[
        ("id", "integer"),
        ("name", "string"),
        ("revision", "integer"),
        ("ready", "boolean"),
        ("active", "boolean"),
        ("type", "string"),
        ("anomaly_threshold", "num?"),
        ("builtin_threshold", "boolean"),
        ("description", "string"),
        ("flagging_key", "str?"),
        ("input_signature", "array"),
        ("metric_key", "str?"),
        ("output_signature", "array"),
        ("tags", "arr?"),
        ("isvc_service_name", "str?"),
        ("isvc_yaml", "str?"),
        ("created_by", "string"),
        ("modified_by", "string"),
        ("created_at", "string"),
        ("modified_at", "string"),
    ]);
    let bad = obj(&[
        ("model_id", "integer"),
        ("dataset_id", "integer"),
        ("run_number", "integer"),
        ("ls_number", "integer"),
        ("metric_value", "number"),
    ]);
    let model_p = [
        ("id", "integer"),
        ("id__in", "string"),
        ("name", "string"),
        ("name__regex", "string"),
        ("active", "boolean"),
        ("ready", "boolean"),
        ("type", "string"),
        ("input_signature_contains_me", "string"),
        ("input_signature_contains_me__regex", "string"),
        ("tag_name", "string"),
        ("tag_value", "string"),
    ];
    let bad_p = [
        ("model_id", "integer"),
        ("model_id__in", "string"),
        ("dataset_id", "integer"),
        ("dataset_id__in", "string"),
        ("dataset", "string"),
        ("dataset__regex", "string"),
        ("me_id", "integer"),
        ("me", "string"),
        ("me__regex", "string"),
        ("run_number", "integer"),
        ("run_number__in", "string"),
        ("ls_number", "integer"),
    ];
    let run_p = [
        ("dataset_id", "integer"),
        ("run_number", "integer"),
        ("run_number__gte", "integer"),
        ("run_number__lte", "integer"),
        ("dataset", "string"),
        ("dataset__regex", "string"),
    ];
    json!({
        "openapi": "3.1.0",
        "info": { "title": "DIALS API (dials-rs)", "version": env!("CARGO_PKG_VERSION") },
        "paths": {
            "/api/v1/th1/": list_op("Per-lumisection 1D histograms", &hist_params, th1, true),
            "/api/v1/th2/": list_op("Per-lumisection 2D histograms", &hist_params, th2, true),
            "/api/v1/th3/": list_op("TH3F per lumisection (scope=run: per-run elements)", &hist_params, th3, true),
            "/api/v1/profile1d/": list_op("TProfile per lumisection: data = GetBinContent, bin_entries = GetBinEntries (scope=run: per-run elements)", &hist_params, profile1d, true),
            "/api/v1/profile2d/": list_op("TProfile2D per lumisection (scope=run: per-run elements)", &hist_params, profile2d, true),
            "/api/v1/scalar/": list_op("Int, Float and String elements per lumisection (scope=run: per-run elements)", &scalar_params, scalar, true),
            "/api/v1/run/": list_op("Runs", &run_p, run, true),
            "/api/v1/lumisection/": list_op("Lumisections", &[("dataset_id", "integer"), ("run_number", "integer"), ("ls_number", "integer"), ("ls_number__gte", "integer"), ("ls_number__lte", "integer"), ("dataset", "string"), ("dataset__regex", "string")], ls, true),
            "/api/v1/file-index/": list_op("Ingested files", &[("dataset_id", "integer"), ("logical_file_name", "string"), ("logical_file_name__regex", "string"), ("status", "string"), ("min_size", "integer"), ("dataset", "string"), ("dataset__regex", "string")], file, true),
            "/api/v1/dataset-index/": list_op("Datasets", &[("dataset", "string"), ("dataset__regex", "string")], ds, true),
            "/api/v1/mes/": list_op("Monitoring elements", &[("me", "string"), ("me__regex", "string"), ("dim", "integer"), ("kind", "string")], me, false),
            "/api/v1/ml-models-index/": list_op("ML models (every revision) of the workspace", &model_p, model, true),
            "/api/v1/ml-bad-lumisection/": list_op("Lumisections a model flags under its current threshold", &bad_p, bad, true),
            "/api/v1/ml-bad-lumisection/cert-json/": cert_op("Certification JSON: {run: {ls: [{model_id, me_id, filename, me, mse}]}}"),
            "/api/v1/ml-bad-lumisection/golden-json/": cert_op("Golden JSON: {run: [[first_ls, last_ls], ...]} of the good lumisections"),
            "/api/v1/health/": { "get": { "summary": "Health check (no token needed)", "security": [],
                "responses": { "200": { "description": "OK", "content": { "application/json": { "schema": { "type": "object" } } } } } } },
        },
        // With auth on (docs/auth.md) every route but this document, and health needs a
        // bearer token; with auth off none does.
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } } },
        "security": [{ "bearer": [] }, {}],
    })
}
