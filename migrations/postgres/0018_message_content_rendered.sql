-- A message's `kapso.content` is rendered from its body when it is read, never stored: it was
-- always the rendering of the stored body (empty once revoked), so a text message's words were
-- written twice per row (issue #24). Nothing is lost: the body holds every word.
alter table messages drop column content;
