"""Pure logic: parsing, cleansing, validation, program specs. No luigi, no cloud I/O."""
