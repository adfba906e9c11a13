-- More fuel brands (geo/_brands.py BRANDS): the international brands of the demo region and Sinochem.
-- brand_raw keeps the value as mapped.
ALTER TABLE stations DROP CONSTRAINT IF EXISTS stations_brand_check;
ALTER TABLE stations ADD CONSTRAINT stations_brand_check CHECK (brand IN (
    'sinopec', 'petrochina', 'cnooc', 'sinochem', 'shell', 'bp', 'esso', 'totalenergies', 'repsol',
    'cepsa', 'galp', 'other'));
ALTER TABLE promotions DROP CONSTRAINT IF EXISTS promotions_brand_check;
ALTER TABLE promotions ADD CONSTRAINT promotions_brand_check CHECK (brand IN (
    'sinopec', 'petrochina', 'cnooc', 'sinochem', 'shell', 'bp', 'esso', 'totalenergies', 'repsol',
    'cepsa', 'galp', 'other'));
