mod embed;
mod openai;
mod local;
