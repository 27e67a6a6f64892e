-- A release promoted from another stage of the project (DEV -> QA -> PROD) names that stage.
ALTER TABLE releases ADD COLUMN promoted_from TEXT;
