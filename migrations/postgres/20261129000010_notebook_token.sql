-- A Ray cluster's JupyterLab: the head's agent starts it beside `ray start --head` (when
-- JupyterLab is installed there) with this token, made at deploy and shown only to the renter.
-- Keep in step with the other backend.
ALTER TABLE clusters ADD COLUMN notebook_token TEXT;
