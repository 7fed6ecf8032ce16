-- Buildsets by ExternalID, the idempotency key of AddBuildset.
CREATE INDEX buildsets_external_id ON buildsets (external_id) WHERE external_id != '';
