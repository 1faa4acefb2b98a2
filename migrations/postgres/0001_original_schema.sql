-- The original system's schema, exactly; a database it created already has all of this.
CREATE TABLE IF NOT EXISTS decision_vault (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    decision text NOT NULL,
    date date NOT NULL DEFAULT current_date,
    type text NOT NULL CHECK (type IN ('strategy', 'technical', 'ethical', 'architecture', 'process', 'security', 'other')),
    active boolean NOT NULL DEFAULT true,
    comment text,
    synced boolean NOT NULL DEFAULT false,
    synced_at timestamptz,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS update_decision_vault_updated_at ON decision_vault;
CREATE TRIGGER update_decision_vault_updated_at BEFORE UPDATE ON decision_vault
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE TABLE IF NOT EXISTS agent_activity (
    id bigserial PRIMARY KEY,
    agent_name text NOT NULL,
    action text NOT NULL,
    details text,
    status text DEFAULT 'completed',
    created_at timestamptz DEFAULT now()
);
