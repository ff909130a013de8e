//! A task's push notification configs (A2A 1.0 §3.1.7–3.1.10): the one
//! its `SendMessage` carried (id `default`: the task's callback, sent by
//! its end) and any created later (`CreateTaskPushNotificationConfig`,
//! kept by the store and pushed once the task ends). A config created
//! after the task ended is kept but pushes nothing: no update is left.
//! Deleting a config before the end stops its push.

use super::types::{Authentication, PushConfig, PushConfigs};
use super::{find, internal, text, to_value, Rpc, RpcError, INVALID_PARAMS, TASK_NOT_FOUND};
use naga_engine::rows::PushConfigRow;
use naga_engine::{callbacks::a2a, Engine, EngineError};
use serde_json::{json, Value};

/// The id of the config a task was sent with.
const SENT_WITH: &str = "default";

/// The callback URL a push config (`TaskPushNotificationConfig`) makes:
/// its `url`, marked with its `token` and `authentication`.
pub(super) fn push_url_of(push: &Value) -> Rpc<Option<String>> {
    let Some(url) = text(&push["url"]) else {
        return Ok(None);
    };
    let auth = &push["authentication"];
    let authentication = match (auth.is_null(), text(&auth["scheme"])) {
        (true, _) => None,
        (false, Some(scheme)) => Some(a2a::Authentication {
            scheme,
            credentials: auth["credentials"].as_str().unwrap_or_default(),
        }),
        (false, None) => {
            let why = "a push config's `authentication` needs its `scheme` (e.g. Bearer)";
            return Err(RpcError(INVALID_PARAMS, why.into()));
        }
    };
    a2a::push_url(url, text(&push["token"]), authentication)
        .map(Some)
        .map_err(|e| RpcError(INVALID_PARAMS, e))
}

/// A config as A2A shows it: its token, its authentication's scheme (a
/// secret is given, never shown).
fn config_json(task_id: &str, id: &str, url: &str) -> PushConfig {
    let scheme = |authorization: String| Authentication {
        scheme: authorization
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    PushConfig {
        id: id.to_owned(),
        task_id: task_id.to_owned(),
        url: a2a::public_url(url).to_owned(),
        token: a2a::push_of(url).flatten().map(str::to_owned),
        authentication: a2a::push_authorization(url).map(scheme),
    }
}

fn task_id_of(params: &Value) -> Rpc<&str> {
    text(&params["taskId"]).ok_or_else(|| RpcError(INVALID_PARAMS, "`taskId` is required".into()))
}

/// Every config of a task, the one it was sent with first.
async fn configs(engine: &Engine, task_id: &str) -> Rpc<Vec<PushConfig>> {
    let task = find(engine, task_id).await?;
    let sent_with = (task.callback_url.as_deref())
        .filter(|url| a2a::push_of(url).is_some())
        .map(|url| config_json(task_id, SENT_WITH, url));
    let created = engine
        .reads()
        .push_configs(task_id)
        .await
        .map_err(internal)?;
    let created = created.iter().map(|c| config_json(task_id, &c.id, &c.url));
    Ok(sent_with.into_iter().chain(created).collect())
}

/// `ListTaskPushNotificationConfigs`.
pub(super) async fn list_push_configs(engine: &Engine, params: &Value) -> Rpc<Value> {
    let configs = configs(engine, task_id_of(params)?).await?;
    Ok(to_value(PushConfigs { configs }))
}

/// `GetTaskPushNotificationConfig` (no `id`: the one it was sent with).
pub(super) async fn get_push_config(engine: &Engine, params: &Value) -> Rpc<Value> {
    let task_id = task_id_of(params)?;
    let id = text(&params["id"]).unwrap_or(SENT_WITH);
    let configs = configs(engine, task_id).await?;
    let config = configs.into_iter().find(|c| c.id == id).ok_or_else(|| {
        RpcError(
            TASK_NOT_FOUND,
            format!("task `{task_id}` has no push notification config `{id}`"),
        )
    })?;
    Ok(to_value(config))
}

/// `CreateTaskPushNotificationConfig`: the config as kept (a new id when
/// none is given; one of the same id is replaced).
pub(super) async fn create_push_config(engine: &Engine, params: &Value) -> Rpc<Value> {
    let task_id = task_id_of(params)?;
    let url =
        push_url_of(params)?.ok_or_else(|| RpcError(INVALID_PARAMS, "`url` is required".into()))?;
    let id = match text(&params["id"]) {
        Some(SENT_WITH) => {
            let why = "the id `default` names the config the task was sent with: choose another";
            return Err(RpcError(INVALID_PARAMS, why.into()));
        }
        Some(id) if id.len() > 256 => {
            return Err(RpcError(INVALID_PARAMS, "`id` is at most 256 bytes".into()));
        }
        Some(id) => id.to_owned(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let config = PushConfigRow {
        task_id: task_id.to_owned(),
        id: id.clone(),
        url: url.clone(),
        created_at: engine.clock().now_ms(),
    };
    match engine.add_push_config(config).await {
        Ok(true) => Ok(to_value(config_json(task_id, &id, &url))),
        Ok(false) => Err(RpcError(TASK_NOT_FOUND, format!("no task `{task_id}`"))),
        Err(EngineError::Invalid(m)) => Err(RpcError(INVALID_PARAMS, m)),
        Err(e) => Err(internal(e)),
    }
}

/// `DeleteTaskPushNotificationConfig`: done (`{}`) also when the task had
/// no such config.
pub(super) async fn delete_push_config(engine: &Engine, params: &Value) -> Rpc<Value> {
    let task_id = task_id_of(params)?;
    let id =
        text(&params["id"]).ok_or_else(|| RpcError(INVALID_PARAMS, "`id` is required".into()))?;
    find(engine, task_id).await?;
    engine
        .delete_push_config(task_id, id, id == SENT_WITH)
        .await
        .map_err(internal)?;
    Ok(json!({}))
}
