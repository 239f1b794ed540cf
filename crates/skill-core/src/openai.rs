//! Chat messages in async-openai's request types, shared by every OpenAI-compatible client
//! (the teacher and the OpenAI-compatible student).

use crate::{ChatMessage, Error, Result, Role};
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage, ChatCompletionRequestSystemMessageArgs,
    ChatCompletionRequestUserMessageArgs,
};

/// The messages as a chat completions request holds them. A tool result goes as a user
/// turn: the agent loop's observations carry no `tool_call_id`, which strict servers require
/// of a tool message.
pub fn chat_messages(messages: &[ChatMessage]) -> Result<Vec<ChatCompletionRequestMessage>> {
    let invalid = |e: async_openai::error::OpenAIError| Error::backend("openai request", e);
    messages
        .iter()
        .map(|m| {
            let content = m.content.as_str();
            Ok(match m.role {
                Role::System => {
                    ChatCompletionRequestSystemMessageArgs::default().content(content).build().map_err(invalid)?.into()
                }
                Role::Assistant => ChatCompletionRequestAssistantMessageArgs::default()
                    .content(content)
                    .build()
                    .map_err(invalid)?
                    .into(),
                Role::User | Role::Tool => {
                    ChatCompletionRequestUserMessageArgs::default().content(content).build().map_err(invalid)?.into()
                }
            })
        })
        .collect()
}
