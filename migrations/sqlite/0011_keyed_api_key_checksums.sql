-- API keys now end in a checksum keyed with a secret derived from the master key, so a key that
-- was never issued cannot be made up. Every key that exists before this migration was issued
-- with an unkeyed checksum (or none) and is marked legacy: it keeps working while
-- security.accept_legacy_api_keys is on, and only legacy keys' display prefixes are worth a
-- lookup when a key fails the keyed checksum. New keys are inserted as 'keyed', so the set of
-- legacy keys only ever shrinks (revocation). The number 0011 is shared by both backends.
alter table api_keys add column key_format text not null default 'keyed'
    check (key_format in ('legacy', 'keyed'));
update api_keys set key_format = 'legacy';
