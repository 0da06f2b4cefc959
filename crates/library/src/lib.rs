//! Course material: format sniffing, text extraction with positions, chunking, vector search.
