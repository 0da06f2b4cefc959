mod concurrent;
mod embed;
mod fidelity;
mod local;
mod openai;
mod structured;
