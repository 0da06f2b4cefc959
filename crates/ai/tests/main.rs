mod embed;
mod local;
mod openai;
