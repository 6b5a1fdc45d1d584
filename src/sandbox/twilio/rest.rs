//! The Twilio double's REST API: account, local-number search, buy, list, show, update,
//! release, with basic auth and Twilio's error bodies.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    authorised, hex32, in_stock_range, json_segment, not_found, stock_pattern, twilio_error,
    Incoming,
};
use crate::sandbox::Shared;
use crate::telephony::e164;

/// Twilio's REST paths, under `/twilio`.
pub fn routes() -> Router<Arc<Shared>> {
    let base = "/twilio/2010-04-01/Accounts";
    Router::new()
        .route(&format!("{base}/{{account}}"), get(account))
        .route(
            &format!("{base}/{{sid}}/AvailablePhoneNumbers/{{country}}/{{kind}}"),
            get(available),
        )
        .route(
            &format!("{base}/{{sid}}/IncomingPhoneNumbers.json"),
            get(list_numbers).post(buy),
        )
        .route(
            &format!("{base}/{{sid}}/IncomingPhoneNumbers/{{number}}"),
            get(show_number).post(update_number).delete(release_number),
        )
}

async fn account(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(sid) = json_segment(&account) else {
        return not_found(&account);
    };
    if let Err(refused) = authorised(&shared, &headers, sid) {
        return *refused;
    }
    Json(
        json!({"sid": sid, "friendly_name": "wagate sandbox", "status": "active",
        "type": "Full", "uri": format!("/2010-04-01/Accounts/{sid}.json")}),
    )
    .into_response()
}

async fn available(
    State(shared): State<Arc<Shared>>,
    Path((sid, country, kind)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorised(&shared, &headers, &sid) {
        return *refused;
    }
    if kind != "Local.json" {
        return not_found(&kind);
    }
    let area_code = query.get("AreaCode").map(String::as_str);
    if area_code.is_some_and(|a| a.len() != 3 || !a.bytes().all(|b| b.is_ascii_digit())) {
        return twilio_error(StatusCode::BAD_REQUEST, 21451, "Invalid AreaCode");
    }
    let country = country.to_ascii_uppercase();
    let world = shared.twilio();
    let Some((prefix, digits)) =
        stock_pattern(&country, area_code).filter(|_| !world.stock_off.contains(&country))
    else {
        return not_found(&format!("AvailablePhoneNumbers/{country}"));
    };
    let page_size = query
        .get("PageSize")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 50);
    let numbers: Vec<Value> = (0..10usize.pow(digits as u32))
        .map(|i| format!("{prefix}{i:0digits$}"))
        .filter(|n| world.owned(n).is_none())
        .take(page_size)
        .map(|n| {
            let friendly = e164::parse(&n).map_or_else(|| n.clone(), |p| p.display);
            json!({"friendly_name": friendly, "phone_number": n, "lata": null, "locality": null,
                "rate_center": null, "latitude": null, "longitude": null, "region": null,
                "postal_code": null, "iso_country": country, "address_requirements": "none",
                "beta": false, "capabilities": {"voice": true, "SMS": true, "MMS": true}})
        })
        .collect();
    Json(json!({
        "available_phone_numbers": numbers,
        "uri": format!("/2010-04-01/Accounts/{sid}/AvailablePhoneNumbers/{country}/Local.json"),
    }))
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct NumberForm {
    pub(super) phone_number: Option<String>,
    pub(super) sms_url: Option<String>,
    pub(super) voice_url: Option<String>,
    pub(super) friendly_name: Option<String>,
    #[serde(flatten)]
    pub(super) _other: HashMap<String, String>,
}

pub(super) fn new_incoming(account_sid: &str, phone_number: &str, form: &NumberForm) -> Incoming {
    Incoming {
        sid: format!("PN{}", hex32()),
        account_sid: account_sid.to_owned(),
        phone_number: phone_number.to_owned(),
        friendly_name: form.friendly_name.clone().unwrap_or_else(|| {
            e164::parse(phone_number).map_or_else(|| phone_number.to_owned(), |p| p.display)
        }),
        sms_url: form.sms_url.clone().unwrap_or_default(),
        voice_url: form.voice_url.clone().unwrap_or_default(),
        date_created: httpdate::fmt_http_date(std::time::SystemTime::now()),
    }
}

async fn buy(
    State(shared): State<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<NumberForm>,
) -> Response {
    if let Err(refused) = authorised(&shared, &headers, &sid) {
        return *refused;
    }
    let Some(number) = form.phone_number.clone().filter(|n| !n.is_empty()) else {
        return twilio_error(StatusCode::BAD_REQUEST, 21421, "PhoneNumber is required");
    };
    let mut world = shared.twilio();
    let sellable = in_stock_range(&number)
        .is_some_and(|country| !world.stock_off.contains(country))
        && world.owned(&number).is_none();
    if !sellable {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21422,
            "PhoneNumber requested is not available",
        );
    }
    let incoming = new_incoming(&sid, &number, &form);
    let body = incoming.json();
    world.numbers.insert(incoming.sid.clone(), incoming);
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn list_numbers(
    State(shared): State<Arc<Shared>>,
    Path(sid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorised(&shared, &headers, &sid) {
        return *refused;
    }
    let world = shared.twilio();
    let numbers: Vec<Value> = world
        .numbers
        .values()
        .filter(|n| n.account_sid == sid)
        .filter(|n| {
            query
                .get("PhoneNumber")
                .is_none_or(|p| *p == n.phone_number)
        })
        .map(Incoming::json)
        .collect();
    Json(json!({"incoming_phone_numbers": numbers})).into_response()
}

/// The account's number `{PN…}.json`, or the answer refusing the request.
fn own_number(
    shared: &Shared,
    headers: &HeaderMap,
    sid: &str,
    number: &str,
) -> Result<String, Box<Response>> {
    authorised(shared, headers, sid)?;
    let pn = json_segment(number).ok_or_else(|| Box::new(not_found(number)))?;
    match shared.twilio().numbers.get(pn) {
        Some(n) if n.account_sid == sid => Ok(pn.to_owned()),
        _ => Err(Box::new(not_found(&format!("IncomingPhoneNumber {pn}")))),
    }
}

async fn show_number(
    State(shared): State<Arc<Shared>>,
    Path((sid, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match own_number(&shared, &headers, &sid, &number) {
        Ok(pn) => Json(shared.twilio().numbers[&pn].json()).into_response(),
        Err(refused) => *refused,
    }
}

async fn update_number(
    State(shared): State<Arc<Shared>>,
    Path((sid, number)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<NumberForm>,
) -> Response {
    let pn = match own_number(&shared, &headers, &sid, &number) {
        Ok(pn) => pn,
        Err(refused) => return *refused,
    };
    let mut world = shared.twilio();
    let incoming = world.numbers.get_mut(&pn).expect("checked above");
    if let Some(url) = form.sms_url {
        incoming.sms_url = url;
    }
    if let Some(url) = form.voice_url {
        incoming.voice_url = url;
    }
    if let Some(name) = form.friendly_name {
        incoming.friendly_name = name;
    }
    Json(incoming.json()).into_response()
}

async fn release_number(
    State(shared): State<Arc<Shared>>,
    Path((sid, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match own_number(&shared, &headers, &sid, &number) {
        Ok(pn) => {
            shared.twilio().numbers.remove(&pn);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refused) => *refused,
    }
}
