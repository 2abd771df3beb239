// The misplaced-rows SQL lives in the catalog layer, below the router, which runs it too (the data
// check of a fleet whose placement rule is not recorded).
export { bucketOwners, misplacedRowsSql, type KeyedTable, type MisplacedQuery } from '../catalog/misplaced-sql.js';
