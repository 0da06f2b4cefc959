mod embed;
mod local;
mod openai;
mod structured;
