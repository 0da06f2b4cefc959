-- Where a chunk is in its file beyond the page and heading, and how much of its text repeats
-- the previous chunk (so passages shown together drop the repeat). NULL in rows stored
-- before this migration: no line range known, overlap unknown (readers compare texts).
-- Same semantics as migrations/postgres/0007_chunk_locations.sql.

-- First and last line (1-based, inclusive) of the file the chunk comes from (plain text and
-- Markdown), overlap included.
ALTER TABLE material_chunks ADD COLUMN line_start INTEGER;
ALTER TABLE material_chunks ADD COLUMN line_end INTEGER;
-- Characters at the start of the text that repeat the end of the previous chunk.
ALTER TABLE material_chunks ADD COLUMN overlap_chars INTEGER;
